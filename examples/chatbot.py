"""A minimal bot loop around a `ChatSession`: how to embed newsqa in your own chatbot.

    python examples/chatbot.py --db /tmp/newsqa-demo          # ingests seeds/ on first run

Each user gets their own session (it remembers that user's conversation, so "he"
and "that" in a follow-up mean what the user meant); the `NewsQA` behind the
sessions is shared. Set OPENAI_API_KEY/OPENAI_BASE_URL (or NEWSQA_LLM) to answer
with a model; without them the offline extractive engine answers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from newsqa import Answer, NewsQA
from newsqa.app.chat import ChatSession

SEEDS = Path(__file__).resolve().parent.parent / "seeds"


class NewsBot:
    """What a chat platform adapter calls: one message in, one reply out."""

    def __init__(self, qa: NewsQA) -> None:
        self.qa = qa
        self.sessions: dict[str, ChatSession] = {}

    def reply(self, user_id: str, message: str) -> str:
        if message.strip().lower() == "/reset":
            self.sessions.pop(user_id, None)
            return "Conversation forgotten."
        session = self.sessions.setdefault(user_id, self.qa.chat(history_tokens=1000))
        answer: Answer = session.ask(message)
        return render(answer)


def render(answer: Answer) -> str:
    """A chat message: the answer, what was actually asked, and the checked quotes."""
    if answer.answerable:
        lines = [answer.answer]
    else:
        lines = [f"I can't tell from the archive: {answer.reason}"]
    if answer.rewritten_question and answer.rewritten_question != answer.question:
        lines.append(f"(understood as: {answer.rewritten_question})")
    for number, citation in enumerate(answer.citations, 1):
        lines.append(f'[{number}] {citation.title} ({citation.source}): "{citation.quote}"')
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=".newsqa", help="index folder (seeds are ingested into it)")
    args = parser.parse_args()
    qa = NewsQA(db=args.db)
    qa.ingest(SEEDS)  # unchanged articles cost nothing on later runs
    bot = NewsBot(qa)
    print("Ask about the news (e.g. 'Who did Qaani meet in Baghdad?', then 'What did he warn?').")
    while True:
        try:
            message = input("> ").strip()
        except (EOFError, KeyboardInterrupt):
            break
        if message in ("exit", "quit"):
            break
        if message:
            print(bot.reply("local-user", message), end="\n\n")


if __name__ == "__main__":
    main()
