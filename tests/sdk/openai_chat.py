"""Calls Warden with the official `openai` SDK and prints one JSON line with what it parsed.

Usage: BASE_URL=http://127.0.0.1:PORT/openai API_KEY=<warden token> python openai_chat.py MODE... [--model M]
MODE: chat | stream | tools | tools-stream | embeddings | models | responses | responses-stream
      | chat-stream-helper | chat-parse | responses-stream-helper   (the SDK's helper methods)
      | propose | propose-stream | propose-stream-helper   (with --propose '[{"name":..,"arguments":{..}}]':
        the fake model proposes a call to each of these tools, in parallel)
      | responses-propose | responses-propose-stream   (the same through the Responses API)
--prompt TEXT: the user's message instead of the default question.
Prints {"<mode>": result, ...}; SDK errors become {"error": {...}} (exit 0) so the caller can assert on them,
including the helpers' own exceptions (ContentFilterFinishReasonError).
"""

import argparse
import json
import os
import sys

import openai

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"location": {"type": "string"}, "unit": {"type": "string"}},
                "required": ["location"],
            },
        },
    }
]

MESSAGES = [
    {"role": "system", "content": "You are a helpful agent."},
    {"role": "user", "content": "What is the weather in Paris?"},
]


def usage_of(usage):
    if usage is None:
        return None
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def chat(client, model):
    raw = client.chat.completions.with_raw_response.create(model=model, messages=MESSAGES, max_completion_tokens=200)
    completion = raw.parse()
    choice = completion.choices[0]
    return {
        "id": completion.id,
        "model": completion.model,
        "content": choice.message.content,
        "finish_reason": choice.finish_reason,
        "usage": usage_of(completion.usage),
        "headers": {"x-warden-decision": raw.headers.get("x-warden-decision")},
    }


def stream(client, model):
    chunks = 0
    content = []
    finish_reason = None
    usage = None
    with client.chat.completions.create(
        model=model,
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
        max_completion_tokens=200,
    ) as events:
        for chunk in events:
            chunks += 1
            if chunk.usage is not None:
                usage = usage_of(chunk.usage)
            for choice in chunk.choices:
                if choice.delta.content:
                    content.append(choice.delta.content)
                if choice.finish_reason:
                    finish_reason = choice.finish_reason
    return {"content": "".join(content), "chunks": chunks, "finish_reason": finish_reason, "usage": usage}


def tools(client, model):
    completion = client.chat.completions.create(model=model, messages=MESSAGES, tools=TOOLS, tool_choice="auto")
    choice = completion.choices[0]
    calls = [
        {"id": c.id, "name": c.function.name, "arguments": json.loads(c.function.arguments)}
        for c in (choice.message.tool_calls or [])
    ]
    return {"tool_calls": calls, "finish_reason": choice.finish_reason, "usage": usage_of(completion.usage)}


def tools_stream(client, model):
    calls = {}
    fragments = 0
    finish_reason = None
    usage = None
    with client.chat.completions.create(
        model=model,
        messages=MESSAGES,
        tools=TOOLS,
        tool_choice="auto",
        stream=True,
        stream_options={"include_usage": True},
    ) as events:
        for chunk in events:
            if chunk.usage is not None:
                usage = usage_of(chunk.usage)
            for choice in chunk.choices:
                if choice.finish_reason:
                    finish_reason = choice.finish_reason
                for delta in choice.delta.tool_calls or []:
                    call = calls.setdefault(delta.index, {"id": None, "name": None, "arguments": ""})
                    if delta.id:
                        call["id"] = delta.id
                    if delta.function and delta.function.name:
                        call["name"] = delta.function.name
                    if delta.function and delta.function.arguments:
                        call["arguments"] += delta.function.arguments
                        fragments += 1
    result = []
    for index in sorted(calls):
        call = calls[index]
        call["arguments"] = json.loads(call["arguments"])
        result.append(call)
    return {"tool_calls": result, "argument_fragments": fragments, "finish_reason": finish_reason, "usage": usage}


def embeddings(client, model):
    response = client.embeddings.create(model=model, input=["first text", "second text"])
    return {
        "count": len(response.data),
        "dimensions": len(response.data[0].embedding),
        "first": response.data[0].embedding,
        "usage": {"prompt_tokens": response.usage.prompt_tokens},
    }


def models(client, _model):
    return {"ids": [m.id for m in client.models.list()]}


def responses(client, model):
    response = client.responses.create(model=model, input="What is the weather in Paris?", store=False, max_output_tokens=200)
    return {
        "text": response.output_text,
        "status": response.status,
        "usage": {"input_tokens": response.usage.input_tokens, "output_tokens": response.usage.output_tokens},
    }


def responses_stream(client, model):
    deltas = []
    final = None
    with client.responses.create(model=model, input="What is the weather in Paris?", store=False, stream=True) as events:
        for event in events:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
            elif event.type == "response.completed":
                final = event.response
    return {
        "text": "".join(deltas),
        "deltas": len(deltas),
        "status": final.status if final else None,
        "usage": {"input_tokens": final.usage.input_tokens, "output_tokens": final.usage.output_tokens} if final else None,
    }


def chat_stream_helper(client, model):
    """`chat.completions.stream()`: the helper that accumulates the stream and raises on a
    content_filter finish."""
    deltas = []
    with client.chat.completions.stream(model=model, messages=MESSAGES, max_completion_tokens=200) as stream:
        for event in stream:
            if event.type == "content.delta":
                deltas.append(event.delta)
        final = stream.get_final_completion()
    choice = final.choices[0]
    return {
        "text": "".join(deltas),
        "content": choice.message.content,
        "finish_reason": choice.finish_reason,
    }


def chat_parse(client, model):
    """`chat.completions.parse()`: raises on a content_filter (or length) finish."""
    raw = client.chat.completions.with_raw_response.parse(model=model, messages=MESSAGES, max_completion_tokens=200)
    completion = raw.parse()
    choice = completion.choices[0]
    return {
        "content": choice.message.content,
        "finish_reason": choice.finish_reason,
        "headers": {"x-warden-decision": raw.headers.get("x-warden-decision")},
    }


def responses_stream_helper(client, model):
    """`responses.stream()`: the helper that needs the stream's `response.completed`."""
    deltas = []
    with client.responses.stream(model=model, input="What is the weather in Paris?", store=False) as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = stream.get_final_response()
    return {"text": "".join(deltas), "output_text": final.output_text, "status": final.status}


PROPOSE = []


def propose_tools():
    """Tools whose description makes the fake model propose a call with these arguments."""
    return [
        {
            "type": "function",
            "function": {
                "name": p["name"],
                "description": "propose:" + json.dumps(p["arguments"], separators=(",", ":")),
                "parameters": {"type": "object", "properties": {}},
            },
        }
        for p in PROPOSE
    ]


def calls_of(tool_calls):
    return [{"id": c.id, "name": c.function.name, "arguments": json.loads(c.function.arguments)} for c in tool_calls or []]


def propose(client, model):
    completion = client.chat.completions.create(model=model, messages=MESSAGES, tools=propose_tools())
    choice = completion.choices[0]
    return {
        "tool_calls": calls_of(choice.message.tool_calls),
        "content": choice.message.content,
        "finish_reason": choice.finish_reason,
        "usage": usage_of(completion.usage),
    }


def propose_stream(client, model):
    """Every chunk as the SDK parsed it, and the calls assembled by index."""
    calls = {}
    content = []
    finish_reason = None
    usage = None
    chunks = 0
    with client.chat.completions.create(
        model=model,
        messages=MESSAGES,
        tools=propose_tools(),
        stream=True,
        stream_options={"include_usage": True},
    ) as events:
        for chunk in events:
            chunks += 1
            if chunk.usage is not None:
                usage = usage_of(chunk.usage)
            for choice in chunk.choices:
                if choice.delta.content:
                    content.append(choice.delta.content)
                if choice.finish_reason:
                    finish_reason = choice.finish_reason
                for delta in choice.delta.tool_calls or []:
                    call = calls.setdefault(delta.index, {"id": None, "name": None, "arguments": ""})
                    if delta.id:
                        call["id"] = delta.id
                    if delta.function and delta.function.name:
                        call["name"] = delta.function.name
                    if delta.function and delta.function.arguments:
                        call["arguments"] += delta.function.arguments
    ordered = [calls[i] for i in sorted(calls)]
    for call in ordered:
        call["arguments"] = json.loads(call["arguments"])
    return {
        "tool_calls": ordered,
        "indices": sorted(calls),
        "content": "".join(content),
        "finish_reason": finish_reason,
        "usage": usage,
        "chunks": chunks,
    }


def propose_stream_helper(client, model):
    """`chat.completions.stream()`: the helper that assembles and validates the whole stream."""
    with client.chat.completions.stream(model=model, messages=MESSAGES, tools=propose_tools()) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    choice = final.choices[0]
    return {
        "tool_calls": calls_of(choice.message.tool_calls),
        "content": choice.message.content,
        "finish_reason": choice.finish_reason,
    }


def responses_propose_tools():
    """The Responses API's tool shape of `propose_tools()`."""
    return [{"type": "function", **t["function"]} for t in propose_tools()]


def response_calls(output):
    calls = [
        {"id": i.call_id, "name": i.name, "arguments": json.loads(i.arguments)}
        for i in output
        if i.type == "function_call"
    ]
    text = "".join(c.text for i in output if i.type == "message" for c in i.content if c.type == "output_text")
    return calls, text


def responses_propose(client, model):
    response = client.responses.create(model=model, input="go", tools=responses_propose_tools(), store=False)
    calls, text = response_calls(response.output)
    return {"tool_calls": calls, "content": text, "status": response.status}


def responses_propose_stream(client, model):
    """`responses.stream()`: the helper that assembles the items and needs `response.completed`."""
    kinds = []
    with client.responses.stream(model=model, input="go", tools=responses_propose_tools(), store=False) as stream:
        for event in stream:
            kinds.append(event.type)
        final = stream.get_final_response()
    calls, text = response_calls(final.output)
    return {"tool_calls": calls, "content": text, "status": final.status, "events": kinds}


DEFAULT_MODEL = "gpt-4o-mini"

MODES = {
    "chat": chat,
    "stream": stream,
    "tools": tools,
    "tools-stream": tools_stream,
    "embeddings": embeddings,
    "models": models,
    "responses": responses,
    "responses-stream": responses_stream,
    "chat-stream-helper": chat_stream_helper,
    "chat-parse": chat_parse,
    "responses-stream-helper": responses_stream_helper,
    "propose": propose,
    "propose-stream": propose_stream,
    "propose-stream-helper": propose_stream_helper,
    "responses-propose": responses_propose,
    "responses-propose-stream": responses_propose_stream,
}


def call(mode, client, model):
    try:
        return MODES[mode](client, model)
    except openai.APIStatusError as e:
        return {
            "error": {
                "status": e.status_code,
                "class": type(e).__name__,
                "message": e.message,
                "body": e.body,
                "headers": {k: v for k, v in e.response.headers.items() if k.startswith(("x-warden", "retry-after"))},
            }
        }
    except (openai.APIConnectionError, openai.ContentFilterFinishReasonError, openai.LengthFinishReasonError) as e:
        return {"error": {"class": type(e).__name__, "message": str(e)}}
    except openai.APIError as e:
        # An error event inside a stream.
        return {"error": {"class": type(e).__name__, "message": e.message, "body": e.body}}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("modes", nargs="+", choices=sorted(MODES))
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--propose", default="[]")
    parser.add_argument("--prompt")
    args = parser.parse_args()
    if args.prompt is not None:
        MESSAGES[1]["content"] = args.prompt
    PROPOSE.extend(json.loads(args.propose))
    client = openai.OpenAI(base_url=os.environ["BASE_URL"], api_key=os.environ["API_KEY"], max_retries=0, timeout=30)
    result = {mode: call(mode, client, args.model) for mode in args.modes}
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
