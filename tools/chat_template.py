"""One chat template everywhere a model is served.

The template the model was trained with (a Jinja string in its tokenizer) is rendered the way
transformers renders it, translated into an Ollama Modelfile `TEMPLATE` (Go text/template),
and named in the vLLM command when the tokenizer does not carry it. The translation is
checked, not trusted: it is rendered by a small renderer of the Go-template subset it uses
(with Ollama's own system-prompt handling) and must give the same string as the Jinja
template on a set of conversations, or `UnsupportedTemplate` is raised.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

# Sentinels that no template changes (no spaces to trim, no case to fold, no HTML to escape).
_MARK = "QZ{}ZQ"


class UnsupportedTemplate(ValueError):
    """A chat template this translator cannot express as a per-role Go template."""


# ---------------------------------------------------------------------------------------
# Jinja, as transformers renders it


def render_jinja(
    template: str,
    messages: list[dict],
    add_generation_prompt: bool = True,
    bos_token: str = "",
    eos_token: str = "",
) -> str:
    """Render a chat template with the settings transformers uses (sandbox, trim_blocks,
    lstrip_blocks, loop controls, `raise_exception`, a non-escaping `tojson`)."""
    import jinja2
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(
        messages=messages, add_generation_prompt=add_generation_prompt,
        bos_token=bos_token, eos_token=eos_token,
    )


# ---------------------------------------------------------------------------------------
# Jinja -> Ollama


@dataclass
class OllamaTemplate:
    """What a Modelfile needs to reproduce a chat template."""

    template: str  # Go text/template for TEMPLATE """..."""
    system: str | None  # default system prompt (Modelfile SYSTEM), if the template adds one
    stops: list[str]  # PARAMETER stop values; the first is the end-of-turn marker
    end_of_turn: str
    roles: dict[str, tuple[str, str]] = field(default_factory=dict)  # role -> (before, after)


def _msg(role: str, i: int) -> dict:
    return {"role": role, "content": _MARK.format(i)}


def _around(text: str, content: str) -> tuple[str, str]:
    if text.count(content) != 1:
        raise UnsupportedTemplate(f"a message's content ({content}) is not shown exactly once")
    before, after = text.split(content)
    return before, after


def _role_wrappers(template: str, bos: str, eos: str) -> tuple[str, str, dict, str | None]:
    """(start of text, generation prompt, role -> (before, after), default system prompt)
    found by rendering growing conversations and reading off what each message added."""

    def r(msgs, gen=False):
        return render_jinja(template, msgs, gen, bos, eos)

    try:
        u1 = r([_msg("user", 1)])
        u1_gen = r([_msg("user", 1)], gen=True)
        ua = r([_msg("user", 1), _msg("assistant", 2)])
        uau = r([_msg("user", 1), _msg("assistant", 2), _msg("user", 3)])
        su = r([_msg("system", 0), _msg("user", 1)])
    except Exception as exc:  # a template that refuses simple conversations
        raise UnsupportedTemplate(f"the template failed on a simple conversation: {exc}") from None
    if not (u1_gen.startswith(u1) and ua.startswith(u1) and uau.startswith(ua)):
        raise UnsupportedTemplate("earlier turns change when a turn is added")
    generation = u1_gen[len(u1):]
    assistant = _around(ua[len(u1):], _MARK.format(2))
    user = _around(uau[len(ua):], _MARK.format(3))
    user_block = user[0] + _MARK.format(1) + user[1]
    if not (u1.endswith(user_block) and su.endswith(user_block)):
        raise UnsupportedTemplate("the first user turn is wrapped unlike later ones")
    head = u1[: -len(user_block)]  # start of text + the default system turn, if any
    sys_before, sys_after = _around(su[: -len(user_block)], _MARK.format(0))
    # Where the start of text (a BOS) ends and the system turn begins: the system turn looks
    # like the user turn with the role renamed (ChatML, Llama 3, ...); else, with no default
    # system turn, the head is the start of text; else there is none (Ollama then always
    # sends a system turn first, so the two need not be told apart).
    renamed = user[0].replace("user", "system") if "user" in user[0] else None
    if renamed and sys_before.endswith(renamed):
        start = sys_before[: -len(renamed)]
    elif sys_before.startswith(head):
        start = head
    else:
        start = ""
    system_open = sys_before[len(start):]
    default = None
    if head != start:
        if not (head.startswith(start + system_open) and head.endswith(sys_after)):
            raise UnsupportedTemplate("the text before the first turn is not a system turn")
        default = head[len(start + system_open): len(head) - len(sys_after)]
    roles = {"system": (system_open, sys_after), "user": user, "assistant": assistant}
    return start, generation, roles, default


def _go_literal(text: str) -> str:
    if "{{" in text or '"""' in text:
        raise UnsupportedTemplate("the template's text contains '{{' or '\"\"\"'")
    return text


def jinja_to_ollama(template: str, bos_token: str = "", eos_token: str = "",
                    special_tokens: set[str] | None = None) -> OllamaTemplate:
    """Translate a per-role chat template (ChatML and the like) into an Ollama TEMPLATE,
    verified by rendering both on several conversations."""
    start, generation, roles, default = _role_wrappers(template, bos_token, eos_token)
    base = roles["user"][0]
    uniform = "user" in base and all(
        before == base.replace("user", role) and after == roles["user"][1]
        for role, (before, after) in roles.items()
    )
    if uniform:  # ChatML: one wrapper with the role name in it
        left, right = base.split("user", 1)
        body = f"{_go_literal(left)}{{{{ .Role }}}}{_go_literal(right)}{{{{ .Content }}}}" \
               f"{_go_literal(roles['user'][1])}"
    else:
        branches = [
            f'{{{{ {"if" if i == 0 else "else if"} eq .Role "{role}" }}}}'
            f"{_go_literal(before)}{{{{ .Content }}}}{_go_literal(after)}"
            for i, (role, (before, after)) in enumerate(roles.items())
        ]
        body = "".join(branches) + "{{ end }}"
    # No `{{-` trimming anywhere: every character of the chat template is kept as written.
    go = (f"{_go_literal(start)}{{{{ range .Messages }}}}{body}{{{{ end }}}}"
          f"{_go_literal(generation)}")
    end_of_turn = roles["assistant"][1].strip() or eos_token
    stops = [end_of_turn]
    if eos_token and eos_token not in stops:
        stops.append(eos_token)
    opener = roles["user"][0]
    specials = special_tokens or set()
    first_special = next((t for t in sorted(specials, key=len, reverse=True)
                          if t and opener.startswith(t)), None)
    if first_special and first_special not in stops:
        stops.append(first_special)  # a model that starts a new turn has finished its own
    result = OllamaTemplate(go, default, stops, end_of_turn, roles)
    _check_translation(template, result, bos_token, eos_token)
    return result


CHECK_CONVERSATIONS = [
    [{"role": "user", "content": "Hello there"}],
    [{"role": "system", "content": "Answer in one word."},
     {"role": "user", "content": "Which intent is 'my card is lost'?"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
     {"role": "user", "content": "Block my card, please.\nIt's gone."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "a"},
     {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}],
]


def _check_translation(template: str, t: OllamaTemplate, bos: str, eos: str) -> None:
    for conv in CHECK_CONVERSATIONS:
        want = render_jinja(template, conv, True, bos, eos)
        got = render_ollama(t.template, conv, t.system)
        if want != got:
            raise UnsupportedTemplate(
                f"the translated template renders {got!r} where the chat template renders {want!r}"
            )


# ---------------------------------------------------------------------------------------
# A renderer for the Go text/template subset the translation emits, with Ollama's handling of
# the Modelfile SYSTEM prompt (server/routes.go) and of consecutive same-role messages
# (template.go `collate`).

_ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)


def _lex_go(text: str) -> list[tuple[str, str]]:
    """("text", s) and ("act", body) tokens, with `{{-` / `-}}` whitespace trimming applied."""
    out: list[tuple[str, str]] = []
    pos, trim_next = 0, False
    for m in _ACTION.finditer(text):
        chunk = text[pos: m.start()]
        chunk = chunk.lstrip() if trim_next else chunk
        chunk = chunk.rstrip() if m.group(1) else chunk
        if chunk:
            out.append(("text", chunk))
        out.append(("act", m.group(2)))
        pos, trim_next = m.end(), bool(m.group(3))
    tail = text[pos:].lstrip() if trim_next else text[pos:]
    return out + ([("text", tail)] if tail else [])


def _parse_go(tokens: list, i: int = 0) -> tuple[list, int]:
    """Nodes up to the next `end`/`else` (or the end): text, field, range, if-chains."""
    nodes: list = []
    while i < len(tokens):
        kind, body = tokens[i]
        if kind == "text":
            nodes.append(("text", body))
        elif body == "end" or body.startswith("else"):
            return nodes, i
        elif body.startswith("range "):
            inner, i = _parse_go(tokens, i + 1)
            if i >= len(tokens) or tokens[i][1] != "end":
                raise UnsupportedTemplate("a range without its end")
            nodes.append(("range", body.split()[1], inner))
        elif body.startswith("if "):
            branches, cond = [], body[3:].strip()
            while True:
                inner, i = _parse_go(tokens, i + 1)
                branches.append((cond, inner))
                if i >= len(tokens):
                    raise UnsupportedTemplate("an if without its end")
                if tokens[i][1] == "end":
                    break
                rest = tokens[i][1][len("else"):].strip()
                cond = rest[3:].strip() if rest.startswith("if ") else None
            nodes.append(("if", branches))
        elif re.fullmatch(r"\.\w+", body):
            nodes.append(("field", body[1:]))
        else:
            raise UnsupportedTemplate(f"unsupported Go template action: {{{{ {body} }}}}")
        i += 1
    return nodes, i


def _go_true(cond: str, scope: dict) -> bool:
    m = re.fullmatch(r'eq \.(\w+) "([^"]*)"', cond)
    if m:
        return str(scope[m.group(1)]) == m.group(2)
    if re.fullmatch(r"\.\w+", cond):
        return bool(scope[cond[1:]])
    raise UnsupportedTemplate(f"unsupported Go template condition: {cond}")


def _run_go(nodes: list, scope: dict, out: list[str]) -> None:
    for node in nodes:
        if node[0] == "text":
            out.append(node[1])
        elif node[0] == "field":
            out.append(str(scope[node[1]]))
        elif node[0] == "range":
            for item in scope[node[1].lstrip(".")] or []:
                _run_go(node[2], item, out)
        else:
            for cond, body in node[1]:
                if cond is None or _go_true(cond, scope):
                    _run_go(body, scope, out)
                    break


def render_ollama(template: str, messages: list[dict], system: str | None = None) -> str:
    """Render a Modelfile TEMPLATE for a chat request as Ollama does: the Modelfile SYSTEM
    goes first unless the request starts with a system turn, and consecutive turns of one
    role are joined with a blank line."""
    msgs = list(messages)
    if system and (not msgs or msgs[0]["role"] != "system"):
        msgs.insert(0, {"role": "system", "content": system})
    collated: list[dict] = []
    for m in msgs:
        if collated and collated[-1]["Role"] == m["role"] and m["role"] != "tool":
            collated[-1]["Content"] += "\n\n" + m["content"]
        else:
            collated.append({"Role": m["role"], "Content": m["content"]})
    scope = {"Messages": collated,
             "System": "\n\n".join(m["Content"] for m in collated if m["Role"] == "system")}
    nodes, end = _parse_go(_lex_go(template))
    if end != len(_lex_go(template)):
        raise UnsupportedTemplate("an end or else without its range or if")
    out: list[str] = []
    _run_go(nodes, scope, out)
    return "".join(out)


def parse_modelfile(text: str) -> dict:
    """FROM, TEMPLATE, SYSTEM and the list of PARAMETER stop values of a Modelfile."""
    found: dict = {"stops": []}
    for key in ("TEMPLATE", "SYSTEM"):
        m = re.search(rf'^{key} """(.*?)"""', text, re.S | re.M)
        found[key.lower()] = m.group(1) if m else None
    m = re.search(r"^FROM (.+)$", text, re.M)
    found["from"] = m.group(1).strip() if m else None
    for value in re.findall(r"^PARAMETER stop (.+)$", text, re.M):
        found["stops"].append(json.loads(value))
    return found


def modelfile(gguf_name: str, ollama: OllamaTemplate | None, note: str = "") -> str:
    """An Ollama Modelfile next to the GGUF file (FROM ./model.gguf)."""
    lines = [f"# Ollama Modelfile written by ftagent. {note}".rstrip(), f"FROM ./{gguf_name}"]
    if ollama is None:
        lines.append("# No TEMPLATE: the chat template could not be translated; Ollama falls "
                     "back to the template stored in the GGUF file, if it knows it.")
        return "\n".join(lines) + "\n"
    lines.append(f'TEMPLATE """{ollama.template}"""')
    if ollama.system:
        if '"""' in ollama.system:
            raise UnsupportedTemplate('the default system prompt contains """')
        lines.append(f'SYSTEM """{ollama.system}"""')
    lines += [f"PARAMETER stop {json.dumps(s, ensure_ascii=False)}" for s in ollama.stops]
    return "\n".join(lines) + "\n"


def ollama_commands(name: str, modelfile_path: str | Path) -> list[str]:
    return [f"ollama create {shlex.quote(name)} -f {shlex.quote(str(modelfile_path))}",
            f"ollama run {shlex.quote(name)}"]


# ---------------------------------------------------------------------------------------
# vLLM


def template_in_folder(folder: str | Path) -> str | None:
    """The chat template a tokenizer folder carries (chat_template.jinja, or the
    `chat_template` key of tokenizer_config.json), or None."""
    folder = Path(folder)
    if (folder / "chat_template.jinja").is_file():
        return (folder / "chat_template.jinja").read_text(encoding="utf-8")
    cfg = folder / "tokenizer_config.json"
    if cfg.is_file():
        value = json.loads(cfg.read_text(encoding="utf-8")).get("chat_template")
        if isinstance(value, str):
            return value
    return None


def vllm_commands(
    merged_dir: str | Path | None = None,
    template_file: str | Path | None = None,
    base: str | Path | None = None,
    adapter_dir: str | Path | None = None,
    name: str = "tuned",
    lora_rank: int | None = None,
) -> list[str]:
    """`vllm serve` for the merged folder and for base + adapter (LoRA serving). A
    `--chat-template` is added where the served tokenizer lacks the training template
    (`template_file`, or the adapter's chat_template.jinja); with no template known at all,
    none is named and vLLM serves completions only."""
    cmds = []
    if merged_dir is not None:
        cmd = ["vllm", "serve", str(merged_dir), "--served-model-name", name]
        if template_in_folder(merged_dir) is None and template_file is not None:
            cmd += ["--chat-template", str(template_file)]
        cmds.append(shlex.join(cmd))
    if base is not None and adapter_dir is not None:
        cmd = ["vllm", "serve", str(base), "--enable-lora", "--lora-modules",
               f"{name}={adapter_dir}"]
        if lora_rank and lora_rank > 16:  # vLLM's default --max-lora-rank is 16
            cmd += ["--max-lora-rank", str(lora_rank)]
        trained = template_in_folder(adapter_dir)
        if trained is not None and trained != template_in_folder(base):
            # The base tokenizer would apply its own template: point vLLM at the trained one.
            jinja = Path(adapter_dir) / "chat_template.jinja"
            chosen = jinja if jinja.is_file() else template_file
            if chosen is not None:
                cmd += ["--chat-template", str(chosen)]
        cmds.append(shlex.join(cmd))
    return cmds
