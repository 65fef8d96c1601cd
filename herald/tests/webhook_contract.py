"""Checks one webhook Herald delivered against what Herald promises receivers: the
`webhooks` section of its OpenAPI document (body schema, each header's schema) and the
Standard Webhooks reference verifier (`standardwebhooks`), which must accept the signature.

    python webhook_contract.py DOCUMENT.json REQUEST.json SECRET [WEBHOOK]

WEBHOOK names the entry of `webhooks` the request must fit: `event` (the default) for a
producer's event, or one of Herald's own types such as `herald.delivery.dead_lettered`.
REQUEST.json is {"headers": {name: value}, "body": "<the body as received>"}. Prints one line
per check; exits 1 with the reasons when any fails."""

import json
import sys

import jsonschema_rs
from standardwebhooks.webhooks import Webhook


def schema_in(document, schema):
    # Refs such as #/components/schemas/X resolve against the whole document.
    return {**schema, "components": document["components"]}


def main():
    document_path, request_path, secret = sys.argv[1:4]
    webhook = sys.argv[4] if len(sys.argv) > 4 else "event"
    with open(document_path) as file:
        document = json.load(file)
    with open(request_path) as file:
        request = json.load(file)
    headers = {name.lower(): value for name, value in request["headers"].items()}
    body = request["body"]
    operation = document["webhooks"][webhook]["post"]
    problems = []

    body_schema = operation["requestBody"]["content"]["application/json"]["schema"]
    errors = [error.message for error in
              jsonschema_rs.validator_for(schema_in(document, body_schema)).iter_errors(json.loads(body))]
    problems += [f"body: {message}" for message in errors]
    print(f"body against the document: {'ok' if not errors else errors}")

    for parameter in operation["parameters"]:
        name = parameter["name"].lower()
        value = headers.get(name)
        if value is None:
            if parameter.get("required"):
                problems.append(f"header {name}: missing")
            continue
        errors = [error.message for error in
                  jsonschema_rs.validator_for(schema_in(document, parameter["schema"])).iter_errors(value)]
        problems += [f"header {name}: {message}" for message in errors]
        print(f"header {name} against the document: {'ok' if not errors else errors}")

    try:
        Webhook(secret).verify(body, headers)
        print("signature, by the Standard Webhooks reference verifier: ok")
    except Exception as error:  # the verifier raises its own error types
        problems.append(f"signature refused by the reference verifier: {error!r}")

    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
