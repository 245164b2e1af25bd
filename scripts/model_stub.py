"""A stand-in model provider for the local stack, so llm.chat runs without a real key.

Speaks the real wire formats on loopback: OpenAI-compatible `POST /v1/chat/completions` and
Anthropic `POST /v1/messages`. The reply quotes the start of the last user message; token
counts are words, so usage and cost show up in the execution's steps. It also serves a small
page at `GET /page` for the README's summarize example. Never used in AWS.

With `"stream": true` it streams the answer a word at a time (STREAM_WORD_SECONDS apart) in
each provider's streaming format: OpenAI chunks with a usage chunk and `data: [DONE]`,
Anthropic's message_start ... message_stop events.

Usage: python model_stub.py PORT
"""

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STREAM_WORD_SECONDS = 0.15

PAGE = "NodeAI runs AI workflows durably on AWS Lambda: every node's result is kept, so a retry never pays twice."


# What the assistant's `propose_workflow` tool call answers: a workflow that greets the person
# named in the input (the walk-through applies and runs it).
PROPOSAL = {
    "message": "A workflow that greets the person named in the input.",
    "definition": {
        "name": "Greet",
        "input_schema": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
        "nodes": [
            {"id": "greet", "type": "text.template", "config": {"template": "Hello {{ input.name }}"}},
            {"id": "done", "type": "flow.output", "config": {"value": "{{ nodes.greet.output.text }}"}},
        ],
        "edges": [{"from": "greet", "to": "done"}],
    },
}


def wants_proposal(request):
    """The assistant forces the `propose_workflow` tool (OpenAI function or Anthropic tool)."""
    names = [t.get("name") or (t.get("function") or {}).get("name") for t in request.get("tools") or []]
    return "propose_workflow" in names


def last_user_text(messages):
    for message in reversed(messages or []):
        if message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else json.dumps(content)
    return ""


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet: the stack's logs are the functions'
        pass

    def reply(self, status, body, content_type="application/json"):
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def stream(self, events):
        """Sends (event name or None, data) pairs as server-sent events, one every STREAM_WORD_SECONDS."""
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.end_headers()
        for name, data in events:
            frame = (f"event: {name}\n" if name else "") + f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"
            self.wfile.write(frame.encode())
            self.wfile.flush()
            time.sleep(STREAM_WORD_SECONDS)
        self.close_connection = True

    def do_GET(self):
        if self.path == "/page":
            self.reply(200, PAGE, "text/plain")
        else:
            self.reply(404, {"error": {"message": "not found"}})

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        try:
            request = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self.reply(400, {"error": {"message": "the body is not JSON"}})
            return
        text = last_user_text(request.get("messages"))
        answer = "Stub summary: " + " ".join(text.split()[:8])
        input_tokens, output_tokens = len(text.split()), len(answer.split())
        model = request.get("model", "stub")
        if self.path == "/v1/chat/completions":
            if not (self.headers.get("authorization") or "").startswith("Bearer "):
                self.reply(401, {"error": {"message": "missing bearer key"}})
                return
            if wants_proposal(request):
                self.reply(200, {
                    "id": "chatcmpl-stub", "object": "chat.completion", "model": model,
                    "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                        "role": "assistant", "content": None, "tool_calls": [{
                            "id": "call_stub", "type": "function",
                            "function": {"name": "propose_workflow", "arguments": json.dumps(PROPOSAL)}}]}}],
                    "usage": {"prompt_tokens": input_tokens, "completion_tokens": 60, "total_tokens": input_tokens + 60},
                })
                return
            if request.get("stream"):
                words = answer.split(" ")
                chunk = lambda delta, finish=None, usage=None, choices=True: {
                    "id": "chatcmpl-stub", "object": "chat.completion.chunk", "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if choices else [], "usage": usage}
                usage = {"prompt_tokens": input_tokens, "completion_tokens": output_tokens,
                         "total_tokens": input_tokens + output_tokens}
                self.stream([(None, chunk({"role": "assistant", "content": ""}))]
                            + [(None, chunk({"content": (" " if i else "") + w})) for i, w in enumerate(words)]
                            + [(None, chunk({}, "stop")), (None, chunk(None, usage=usage, choices=False)), (None, "[DONE]")])
                return
            self.reply(200, {
                "id": "chatcmpl-stub", "object": "chat.completion", "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": input_tokens, "completion_tokens": output_tokens,
                          "total_tokens": input_tokens + output_tokens},
            })
        elif self.path == "/v1/messages":
            if not self.headers.get("x-api-key"):
                self.reply(401, {"type": "error", "error": {"type": "authentication_error", "message": "missing x-api-key"}})
                return
            if wants_proposal(request):
                self.reply(200, {
                    "id": "msg_stub", "type": "message", "role": "assistant", "model": model,
                    "content": [{"type": "tool_use", "id": "toolu_stub", "name": "propose_workflow", "input": PROPOSAL}],
                    "stop_reason": "tool_use", "usage": {"input_tokens": input_tokens, "output_tokens": 60},
                })
                return
            if request.get("stream"):
                words = answer.split(" ")
                self.stream(
                    [("message_start", {"type": "message_start", "message": {
                        "id": "msg_stub", "type": "message", "role": "assistant", "model": model, "content": [],
                        "stop_reason": None, "usage": {"input_tokens": input_tokens, "output_tokens": 1}}}),
                     ("content_block_start", {"type": "content_block_start", "index": 0,
                                              "content_block": {"type": "text", "text": ""}})]
                    + [("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                "delta": {"type": "text_delta", "text": (" " if i else "") + w}})
                       for i, w in enumerate(words)]
                    + [("content_block_stop", {"type": "content_block_stop", "index": 0}),
                       ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                                          "usage": {"output_tokens": output_tokens}}),
                       ("message_stop", {"type": "message_stop"})])
                return
            self.reply(200, {
                "id": "msg_stub", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": answer}], "stop_reason": "end_turn",
                "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
            })
        else:
            self.reply(404, {"error": {"message": "not found"}})


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
