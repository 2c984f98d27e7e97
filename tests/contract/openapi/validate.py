"""Checks an OpenAPI document and real answers against it, with maintained validators.

usage: validate.py DOCUMENT [CASES]
  DOCUMENT  the OpenAPI 3.1 document (JSON)
  CASES     a JSON list of {"pointer": JSON pointer to a schema in DOCUMENT, "instance": value}

Prints "ok", or what failed and exits 1.
"""
import json
import sys

from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_spec
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012


def main():
    with open(sys.argv[1]) as f:
        document = json.load(f)
    validate_spec(document)
    if len(sys.argv) > 2:
        with open(sys.argv[2]) as f:
            cases = json.load(f)
        registry = Registry().with_resource("urn:openapi", Resource(contents=document, specification=DRAFT202012))
        failures = []
        for case in cases:
            schema = {"$ref": "urn:openapi#" + case["pointer"]}
            validator = Draft202012Validator(schema, registry=registry)
            errors = [e.message for e in validator.iter_errors(case["instance"])]
            if errors:
                failures.append(f"{case['pointer']}: {errors}")
        if failures:
            print("\n".join(failures))
            sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()
