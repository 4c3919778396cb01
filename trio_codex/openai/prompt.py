"""Turn a conversation into the one prompt text Codex reads on stdin, plus its images.

Pure. Roles and order are kept: a lone user message is passed as it is; anything longer is
rendered as a transcript of tagged messages, system and developer instructions included, so the
model sees who said what. Images become ``ImagePart``s (checked and written to files elsewhere);
parts the server cannot pass on are refused with a 400 naming the part, and so is a conversation
with nothing to answer (every text empty or whitespace, and no image): ``check_not_empty``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Final

from ..errors import ContextLengthError, InvalidRequestError
from .schemas import ChatMessage

#: Codex's own limit on the user input, in characters (CODEX_FACTS section 5).
MAX_PROMPT_CHARS: Final = 1_048_576


@dataclasses.dataclass(frozen=True)
class ImagePart:
    """One image part of a request: its URL and the path that names it in refusals
    (``messages[1].content[2].image_url``). Checked and written to a file by ``run.images``."""

    url: str
    param: str


@dataclasses.dataclass(frozen=True)
class Turn:
    """One message of the conversation, flattened to text."""

    role: str
    text: str
    name: str | None = None


@dataclasses.dataclass(frozen=True)
class Prompt:
    text: str
    images: tuple[ImagePart, ...] = ()


def chat_turns(messages: Sequence[ChatMessage]) -> tuple[list[Turn], list[ImagePart]]:
    """Flatten chat messages; text parts are joined, ``image_url`` parts become image refs."""
    turns: list[Turn] = []
    images: list[ImagePart] = []
    for i, message in enumerate(messages):
        pieces: list[str] = []
        content = message.content
        if isinstance(content, str):
            pieces.append(content)
        elif content is not None:
            for j, part in enumerate(content):
                where = f"messages[{i}].content[{j}]"
                if part.type == "text":
                    if part.text is None:
                        raise InvalidRequestError(
                            f"Missing required parameter: '{where}.text'.",
                            param=f"{where}.text",
                            code="missing_required_parameter",
                        )
                    pieces.append(part.text)
                elif part.type == "image_url":
                    url = (
                        part.image_url.url
                        if part.image_url is not None and not isinstance(part.image_url, str)
                        else part.image_url
                    )
                    if not url:
                        raise InvalidRequestError(
                            f"Missing required parameter: '{where}.image_url'.",
                            param=f"{where}.image_url",
                            code="missing_required_parameter",
                        )
                    images.append(ImagePart(url=url, param=f"{where}.image_url"))
                    pieces.append(f"[image {len(images)}]")
                elif part.type == "refusal" and part.refusal is not None:
                    pieces.append(part.refusal)
                else:
                    raise InvalidRequestError(
                        f"Content parts of type '{part.type}' are not supported; "
                        "use 'text' or 'image_url'.",
                        param=f"{where}.type",
                        code="invalid_value",
                    )
        if message.tool_calls:
            for call in message.tool_calls:
                fn = call.function
                name = fn.name if fn is not None else None
                args = fn.arguments if fn is not None else None
                pieces.append(f"[called tool {name or '?'} with arguments {args or '{}'}]")
        name = message.name
        if message.role == "tool" and message.tool_call_id:
            name = f"tool_call_id={message.tool_call_id}"
        turns.append(Turn(message.role, "\n".join(pieces), name))
    return turns, images


def render(turns: Sequence[Turn]) -> str:
    """One prompt text; a single user turn is passed through unchanged."""
    if len(turns) == 1 and turns[0].role == "user" and turns[0].name is None:
        return turns[0].text
    blocks = []
    for turn in turns:
        attrs = f'role="{turn.role}"'
        if turn.name:
            attrs += f" name={json.dumps(turn.name)}"
        blocks.append(f"<message {attrs}>\n{turn.text}\n</message>")
    header = (
        "The conversation so far is below, oldest first. Follow the system and developer "
        "messages, and answer the last message as the assistant.\n\n"
    )
    return header + "\n\n".join(blocks)


def check_length(text: str, *, param: str | None = "messages") -> str:
    """Refuse a prompt over Codex's input limit before any process starts."""
    if len(text) > MAX_PROMPT_CHARS:
        raise ContextLengthError(
            f"The prompt is {len(text)} characters long; Codex accepts at most {MAX_PROMPT_CHARS}.",
            param=param,
        )
    return text


def check_encodable(text: str, *, param: str | None = "messages") -> str:
    """Refuse a prompt that cannot travel to Codex as UTF-8 (a lone surrogate such as the
    JSON escape ``"\\ud800"``), as a 400 instead of a failure when the run starts."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequestError(
            f"The prompt contains a lone surrogate (U+{ord(text[exc.start]):04X}) at character "
            f"{exc.start}, which is not valid Unicode text.",
            param=param,
            code="invalid_value",
        ) from None
    return text


def check_not_empty(turns: Sequence[Turn], images: Sequence[ImagePart], *, param: str) -> None:
    """Refuse a conversation with nothing to answer (every text empty or whitespace, and no
    image) as a 400 naming ``param``, before any process starts."""
    if images or any(turn.text.strip() for turn in turns):
        return
    raise InvalidRequestError(
        f"The prompt is empty: '{param}' has no text (only empty or whitespace content) "
        "and no image.",
        param=param,
        code="invalid_value",
    )


def chat_prompt(messages: Sequence[ChatMessage]) -> Prompt:
    turns, images = chat_turns(messages)
    check_not_empty(
        turns, images, param="messages[0].content" if len(messages) == 1 else "messages"
    )
    return Prompt(render(turns), tuple(images))
