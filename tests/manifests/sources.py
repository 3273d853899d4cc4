"""What the binaries and the Dockerfiles say, read from the repository's files: the
environment variables each binary accepts (clap's `env = "..."`) with their defaults,
its subcommands, its HTTP routes, the proxy config's settings (serde structs), and the
instructions of a Dockerfile. The tests hold the manifests to these, so that a renamed
variable or a moved port fails here rather than in a cluster."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def rust_sources(crate_dir: str) -> str:
    """All Rust source of a crate's `src/`, concatenated."""
    return "\n".join(p.read_text() for p in sorted((ROOT / crate_dir / "src").rglob("*.rs")))


@dataclass
class Binary:
    """A binary of the workspace, as its crate declares it."""

    package: str
    name: str
    # Environment variable -> its default (None when it has none).
    env: dict[str, str | None]
    # Subcommands (kebab-case), empty for a binary without any.
    subcommands: list[str]
    source: str = field(repr=False)

    def routes(self, crate_dirs: list[str]) -> set[str]:
        """Paths routed with axum's `.route("/path", ...)` or matched as `"/path"` arms."""
        text = "\n".join(rust_sources(d) for d in crate_dirs)
        return set(re.findall(r'\.route\(\s*"(/[^"]*)"', text)) | set(
            re.findall(r'\(&Method::\w+,\s*"(/[^"]*)"\)', text)
        )


_ARG = re.compile(r"#\[arg\((.*?)\)\]\s*(?:pub\s+)?\w+\s*:", re.S)


def binary(crate_dir: str) -> Binary:
    manifest = tomllib.loads((ROOT / crate_dir / "Cargo.toml").read_text())
    package = manifest["package"]["name"]
    bins = manifest.get("bin", [])
    name = bins[0]["name"] if bins else package
    source = rust_sources(crate_dir)
    env: dict[str, str | None] = {}
    for attr in _ARG.findall(source):
        m = re.search(r'\benv\s*=\s*"([A-Z0-9_]+)"', attr)
        if not m:
            continue
        default = re.search(r'default_value(?:_t)?\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s)]+)', attr)
        value = None
        if default:
            value = default.group(1)
            value = json.loads(value) if value.startswith('"') else value
        env[m.group(1)] = value
    subcommands: list[str] = []
    m = re.search(r"enum\s+Command\s*\{(.*?)\n\}", source, re.S)
    if m and "Subcommand" in source:
        for variant in re.findall(r"^\s*([A-Z]\w*)\s*[({,]", m.group(1), re.M):
            subcommands.append(re.sub(r"(?<!^)([A-Z])", r"-\1", variant).lower())
    return Binary(package, name, env, subcommands, source)


def workspace() -> dict:
    return tomllib.loads((ROOT / "Cargo.toml").read_text())


# --- the proxy config's schema, from its serde structs -----------------------------


@dataclass
class RustStruct:
    fields: dict[str, str]  # field name -> Rust type
    deny_unknown: bool


def rust_structs(crate_dir: str) -> dict[str, RustStruct]:
    """`struct Name { pub field: Type, ... }` of a crate, with serde's deny_unknown_fields."""
    text = rust_sources(crate_dir)
    out: dict[str, RustStruct] = {}
    for m in re.finditer(r"((?:#\[[^\n]*\]\s*)*)pub struct (\w+)\s*\{(.*?)\n\}", text, re.S):
        attrs, name, body = m.groups()
        fields = dict(re.findall(r"^\s*pub\s+(\w+)\s*:\s*([^\n]+?),?\s*$", body, re.M))
        out[name] = RustStruct(fields, "deny_unknown_fields" in attrs)
    return out


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_SCALARS = {
    "bool": lambda v: isinstance(v, bool),
    "f64": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "String": lambda v: isinstance(v, str),
    **{t: lambda v: _is_int(v) and v >= 0 for t in ("u8", "u16", "u32", "u64", "usize")},
    **{t: _is_int for t in ("i32", "i64")},
}


def check_against_struct(value, rust_type: str, structs: dict[str, RustStruct], path: str) -> list[str]:
    """Unknown keys in `value` where Rust type `rust_type` refuses them."""
    rust_type = rust_type.strip()
    m = re.fullmatch(r"Option<(.*)>", rust_type)
    if m:
        return [] if value is None else check_against_struct(value, m.group(1), structs, path)
    m = re.fullmatch(r"(?:BTreeMap|HashMap)<\s*String\s*,\s*(.*)>", rust_type)
    if m:
        if not isinstance(value, dict):
            return [f"{path}: expected a mapping"]
        return [e for k, v in value.items() for e in check_against_struct(v, m.group(1), structs, f"{path}.{k}")]
    m = re.fullmatch(r"Vec<(.*)>", rust_type)
    if m:
        if not isinstance(value, list):
            return [f"{path}: expected a list"]
        return [e for i, v in enumerate(value) for e in check_against_struct(v, m.group(1), structs, f"{path}[{i}]")]
    scalar = _SCALARS.get(rust_type)
    if scalar is not None:
        return [] if scalar(value) else [f"{path}: {value!r} is not a {rust_type}"]
    struct = structs.get(rust_type)
    if struct is None or not struct.deny_unknown:
        return []
    if not isinstance(value, dict):
        return [f"{path}: expected a mapping for {rust_type}"]
    errors = [f"{path}.{k}: not a setting of {rust_type}" for k in value if k not in struct.fields]
    for k, v in value.items():
        if k in struct.fields:
            errors += check_against_struct(v, struct.fields[k], structs, f"{path}.{k}")
    return errors


def rust_const(crate_dir: str, name: str) -> str:
    m = re.search(rf"const {name}\s*:\s*\w+\s*=\s*([^;]+);", rust_sources(crate_dir))
    assert m, f"constant {name} not found in {crate_dir}"
    return m.group(1).strip()


# --- Dockerfiles --------------------------------------------------------------------


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[tuple[str, str]]  # (INSTRUCTION, arguments)

    def all(self, instruction: str) -> list[str]:
        return [args for instr, args in self.instructions if instr == instruction]

    def last(self, instruction: str) -> str | None:
        found = self.all(instruction)
        return found[-1] if found else None


def dockerfile(path: str) -> list[Stage]:
    """The stages of a Dockerfile, with line continuations joined and comments dropped."""
    logical: list[str] = []
    buffer = ""
    for line in (ROOT / path).read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        buffer += stripped
        if buffer.strip():
            logical.append(buffer.strip())
        buffer = ""
    stages: list[Stage] = []
    for line in logical:
        instr, _, args = line.partition(" ")
        instr = instr.upper()
        if instr == "FROM":
            parts = args.split()
            parts = [p for p in parts if not p.startswith("--platform")]
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name, []))
        else:
            assert stages, f"{path}: {instr} before FROM"
            stages[-1].instructions.append((instr, args.strip()))
    return stages


def exec_form(args: str | None) -> list[str] | None:
    """ENTRYPOINT/CMD in exec (JSON) form; None when absent."""
    if args is None:
        return None
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def env_pairs(stage: Stage) -> dict[str, str]:
    out: dict[str, str] = {}
    for args in stage.all("ENV"):
        for token in shlex.split(args):
            key, sep, value = token.partition("=")
            assert sep, f"ENV {args!r}: use the KEY=VALUE form"
            out[key] = value
    return out


def exposed_ports(stage: Stage) -> set[int]:
    ports: set[int] = set()
    for args in stage.all("EXPOSE"):
        for token in args.split():
            ports.add(int(token.split("/")[0]))
    return ports
