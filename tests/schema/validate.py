#!/usr/bin/env python3
"""Validate YAML files against a JSON Schema (draft 2020-12), as an editor would.

    python3 tests/schema/validate.py SCHEMA.json FILE.yaml...
    hookflow schema | python3 tests/schema/validate.py - FILE.yaml...

Prints one JSON line per file: {"file", "valid", "errors"}, each error the deepest
reasons ("path: message"). Exits 0 when it could check every file (valid or not), 2 when
the schema itself is not a valid 2020-12 schema, 3 when jsonschema or PyYAML is missing.

YAML is read with the YAML 1.2 core schema, as hookflow reads it: only true/false are
booleans (so `on:` is a key, not True), and dates stay text.
"""
import json
import re
import sys

try:
    import jsonschema
    import yaml
except ImportError as missing:
    print(f"missing Python package: {missing.name}; install with: pip install jsonschema pyyaml",
          file=sys.stderr)
    sys.exit(3)


class Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 core scalars instead of 1.1's."""


Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers
            if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:int",
                           "tag:yaml.org,2002:float", "tag:yaml.org,2002:timestamp")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
    list("-+0123456789"))
Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
               r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."))


def construct_int(loader, node):
    text = loader.construct_scalar(node)
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text)


Yaml12Loader.add_constructor("tag:yaml.org,2002:int", construct_int)


def leaves(error):
    """The deepest reasons of an error (the branches of anyOf/oneOf that failed)."""
    if error.context:
        for inner in error.context:
            yield from leaves(inner)
    else:
        yield error


def describe(error):
    path = "/".join(str(part) for part in error.absolute_path)
    return f"{path or '(top)'}: {error.message}"


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 64
    if sys.argv[1] == "-":
        schema = json.load(sys.stdin)
    else:
        with open(sys.argv[1], encoding="utf-8") as f:
            schema = json.load(f)
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as error:
        print(f"not a valid draft 2020-12 schema: {error.message}", file=sys.stderr)
        return 2
    validator = jsonschema.Draft202012Validator(schema)
    for path in sys.argv[2:]:
        with open(path, encoding="utf-8") as f:
            document = yaml.load(f, Loader=Yaml12Loader)
        errors = sorted(
            {describe(leaf) for error in validator.iter_errors(document) for leaf in leaves(error)})
        print(json.dumps({"file": path, "valid": not errors, "errors": errors}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
