"""Engine edges: what a particular server (SGLang) needs from the framework-neutral core."""
