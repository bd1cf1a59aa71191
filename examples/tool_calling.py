"""Tool calling in two steps: the model asks for a tool, we run it, the model answers."""

import json

from _common import MODEL, make_client

tools = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get current weather for a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "City name"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city"],
            },
        },
    }
]


def get_weather(city: str, unit: str = "celsius") -> dict:
    """A stand-in for a real weather API."""
    return {"city": city, "temperature": 22, "unit": unit, "condition": "sunny"}


client = make_client()
question = {"role": "user", "content": "What's the weather in Tokyo?"}

# Step 1: the model decides to call a tool.
response = client.chat.completions.create(
    model=MODEL, messages=[question], tools=tools, tool_choice="auto"
)
message = response.choices[0].message
call = message.tool_calls[0]
arguments = json.loads(call.function.arguments)
finish = response.choices[0].finish_reason
print(f"Tool: {call.function.name}({call.function.arguments}) finish_reason={finish}")

# Step 2: run the tool and send its result back for the final answer.
result = get_weather(**arguments)
final = client.chat.completions.create(
    model=MODEL,
    messages=[
        question,
        message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)},
    ],
    tools=tools,
)
print("Answer:", final.choices[0].message.content)
