"""The official openai client talking to `newsqa serve`.

    newsqa ingest seeds/ --db /tmp/newsqa-demo
    newsqa serve --db /tmp/newsqa-demo --api-key demo-key &
    python examples/openai_client.py --base-url http://127.0.0.1:8000/v1 --api-key demo-key

Any tool that speaks the OpenAI chat API works the same way: the last user message
is the question, earlier messages are the conversation newsqa uses to understand a
follow-up. Each reply's text ends with a "Sources:" list; the same citations come
structured in the extra `newsqa` field.
"""

from __future__ import annotations

import argparse
from typing import Any

from openai import OpenAI


def newsqa_field(obj: Any) -> dict[str, Any]:
    """The structured citations newsqa adds next to the OpenAI fields."""
    return dict((obj.model_extra or {}).get("newsqa") or {})


def main() -> None:
    parser = argparse.ArgumentParser(description="Ask newsqa through the OpenAI API.")
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--api-key", default="none", help="the key given to `newsqa serve`")
    args = parser.parse_args()
    client = OpenAI(base_url=args.base_url, api_key=args.api_key)

    messages: list[Any] = [{"role": "user", "content": "Who did Qaani meet in Baghdad?"}]
    first = client.chat.completions.create(model="newsqa", messages=messages)
    print(first.choices[0].message.content, end="\n\n")

    # A follow-up: send the conversation so far; newsqa rewrites "he" before searching.
    messages += [
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": "What did he warn?"},
    ]
    stream = client.chat.completions.create(model="newsqa", messages=messages, stream=True)
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            print(chunk.choices[0].delta.content, end="", flush=True)
        if chunk.choices and chunk.choices[0].finish_reason == "stop":
            extra = newsqa_field(chunk)
            print(f"\n\n(understood as: {extra.get('rewritten_question')})")
            for citation in extra.get("citations", []):
                print(f"- {citation['article_id']} [{citation['start']}:{citation['end']}]")


if __name__ == "__main__":
    main()
