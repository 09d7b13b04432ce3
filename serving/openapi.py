"""The API's OpenAPI 3.1 description, built from the served model's data contract.

The routes read their bodies themselves (serving/app.py), so FastAPI has no body models to
describe; this module writes the document from the contract instead: one property per
feature column, typed (numbers or text, null always allowed since the pipeline imputes it),
with the categories seen in training as `enum` and the training range as
`minimum`/`maximum`. The server itself is more lenient than that schema (an unseen category
or a value out of range is answered, and counted in /model and by monitoring): the schema
says what the model was trained on, which is what a client should send.
"""

from experiments.contract import ColumnContract, DataContract

OPENAPI_VERSION = "3.1.0"
BEARER = "bearer"

_REFUSAL = {"$ref": "#/components/schemas/Refusal"}
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying",
                                "schema": {"type": "integer", "minimum": 1}}}


def describe_api(name: str, version: str, contract: DataContract, max_records: int,
                 max_body_bytes: int, needs_token: bool) -> dict:
    """The OpenAPI document of a server answering with `version` of model `name`."""
    document = {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": f"{name} (mlops serve)",
            "version": version,
            "description": (
                f"Predictions of {name}'s champion, version {version} ({contract.task}, "
                f"target `{contract.target}`). The record fields follow the version's data "
                "contract and change when `champion` moves to a version with another one. "
                f"At most {max_records} records and {max_body_bytes} bytes per request."
            ),
        },
        "paths": {
            "/predict": {"post": _predict_operation(contract, max_records, max_body_bytes)},
            "/feedback": {"post": _feedback_operation(contract, max_body_bytes)},
            "/health": {"get": _health_operation()},
            "/model": {"get": _model_operation()},
        },
        "components": {"schemas": _schemas(contract, max_records)},
    }
    if needs_token:
        document["components"]["securitySchemes"] = {BEARER: {
            "type": "http", "scheme": "bearer",
            "description": "MLOPS_SERVE_TOKEN (generated into MLOPS_HOME/secrets.env in the "
                           "full profile)"}}
        document["security"] = [{BEARER: []}]
        document["paths"]["/health"]["get"]["security"] = []  # /health answers anyone
        for path in ("/predict", "/feedback", "/model"):
            for operation in document["paths"][path].values():
                operation["responses"]["401"] = _refusal(
                    "missing or wrong bearer token (with `WWW-Authenticate: Bearer`)")
    return document


def record_schema(contract: DataContract) -> dict:
    """One record: every feature column, nothing else; null for a value not known."""
    return {
        "type": "object",
        "properties": {c.name: column_schema(c) for c in contract.columns},
        "required": contract.feature_names,
        "additionalProperties": False,
    }


def column_schema(column: ColumnContract) -> dict:
    nulls = "null: imputed by the pipeline" if column.nullable else (
        "null is accepted (imputed) but training had none")
    if column.kind == "numeric":
        schema: dict = {"type": ["number", "null"]}
        seen = ""
        if column.minimum is not None and column.maximum is not None:
            schema["minimum"] = column.minimum
            schema["maximum"] = column.maximum
            seen = (f"; trained on {column.minimum:g} to {column.maximum:g} (values outside "
                    "are answered, and counted as out of range by monitoring)")
        schema["description"] = f"numeric ({column.dtype} in training){seen}; {nulls}"
        return schema
    if column.dtype == "bool":
        return {"type": ["boolean", "string", "null"], "description": f"true or false; {nulls}"}
    schema = {"type": ["string", "null"]}
    if column.categories is not None:
        schema["enum"] = [*column.categories, None]
        known = ("; one of the categories seen in training (another value is answered, "
                 "ignored by the model and counted in /model as unseen)")
    else:
        known = "; too many categories in training to list"
    schema["description"] = f"categorical text{known}; {nulls}"
    return schema


def example_record(contract: DataContract) -> dict:
    """A record the schema allows: each range's minimum, each column's first category."""
    record = {}
    for column in contract.columns:
        if column.kind == "numeric":
            record[column.name] = column.minimum
        elif column.dtype == "bool":
            record[column.name] = None
        else:
            record[column.name] = column.categories[0] if column.categories else None
    return record


def _schemas(contract: DataContract, max_records: int) -> dict:
    return {
        "Record": record_schema(contract),
        "PredictRequest": {
            "type": "object",
            "properties": {
                "records": {"type": "array", "items": {"$ref": "#/components/schemas/Record"},
                            "minItems": 1, "maxItems": max_records},
                "proba": {"type": "boolean", "default": False,
                          "description": "also answer each class's probability (classifiers only)"},
            },
            "required": ["records"],
            "additionalProperties": False,
        },
        **_answer_schemas(contract),
        **_SERVER_SCHEMAS,
    }


def _answer_schemas(contract: DataContract) -> dict:
    """The /predict answer and the /feedback body: classes or numbers, by the model's task."""
    classifier = contract.task == "classification"
    classes = ", ".join(contract.classes or ())
    prediction = ({"description": f"the predicted class, as the training data wrote it "
                                  f"(classes: {classes})"} if classifier
                  else {"type": "number", "description": f"the predicted `{contract.target}`"})
    answer = {
        "predictions": {"type": "array", "items": prediction,
                        "description": "one per record, in the request's order"},
        "model_version": {"type": "string", "description": "the version that answered"},
        "request_id": {"type": "string", "description": "for POST /feedback"},
    }
    if classifier:
        answer |= {
            "classes": {"type": "array", "items": {},
                        "description": "with `proba`: the classes, in the probabilities' column order"},
            "probabilities": {"type": "array", "items": {"type": "array", "items": {"type": "number"}},
                              "description": "with `proba`: one row per record, one column per class"},
        }
    label = ({"description": f"the true class (classes: {classes})"} if classifier
             else {"type": "number", "description": f"the true `{contract.target}`"})
    return {
        "PredictAnswer": {"type": "object", "properties": answer,
                          "required": ["predictions", "model_version", "request_id"]},
        "FeedbackRequest": {
            "type": "object",
            "properties": {
                "request_id": {"type": "string", "description": "from the /predict answer"},
                "labels": {"type": "array", "items": label,
                           "description": "one per record of that request, in its order"},
            },
            "required": ["request_id", "labels"],
            "additionalProperties": False,
        },
    }


# The answers that do not depend on the model.
_SERVER_SCHEMAS = {
    "FeedbackAnswer": {"type": "object", "required": ["request_id", "labels"], "properties": {
        "request_id": {"type": "string"},
        "labels": {"type": "integer", "description": "how many labels were stored"}}},
    "Health": {"type": "object", "required": ["status", "model", "model_version"], "properties": {
        "status": {"type": "string", "enum": ["ok", "loading"]},
        "model": {"type": ["string", "null"]},
        "model_version": {"type": ["string", "null"]}}},
    "ModelInfo": {"type": "object", "required": ["name", "version", "run_id"], "properties": {
        "name": {"type": "string"}, "version": {"type": "string"},
        "run_id": {"type": "string", "description": "the MLflow run that trained it"},
        "loaded_at": {"type": "string", "format": "date-time"},
        "features": {"type": "array", "items": {"type": "string"}},
        "task": {"type": "string", "enum": ["classification", "regression"]},
        "records_served": {"type": "integer"},
        "unseen_categories": {"type": "object", "additionalProperties": {"type": "integer"}},
        "traffic_rows_pending": {"type": "integer"},
        "traffic_failed_attempts": {"type": "integer"},
        "refused_overloaded": {"type": "integer"}}},
    "Refusal": {
        "type": "object",
        "properties": {
            "detail": {"type": "string", "description": "what was wrong, in one line"},
            "record": {"type": "integer", "description": "the bad record's index (422)"},
            "field": {"type": "string", "description": "the bad field (422)"},
            "label": {"type": "integer", "description": "the bad label's index (/feedback 422)"},
        },
        "required": ["detail"],
    },
}


def _json(ref: str, example=None) -> dict:
    media: dict = {"schema": {"$ref": f"#/components/schemas/{ref}"}}
    if example is not None:
        media["example"] = example
    return {"application/json": media}


def _refusal(description: str, headers: dict | None = None) -> dict:
    answer = {"description": description, "content": {"application/json": {"schema": _REFUSAL}}}
    if headers:
        answer["headers"] = headers
    return answer


def _bad_body(max_body_bytes: int) -> dict:
    return {
        "400": _refusal("malformed JSON or a bad Content-Length"),
        "413": _refusal(f"a body over {max_body_bytes} bytes (MLOPS_SERVE_MAX_BODY_BYTES)"),
        "415": _refusal("the body is not declared `Content-Type: application/json`"),
    }


def _overloaded(what: str) -> dict:
    return _refusal(f"{what} (too many requests in progress or queued, or the traffic store is "
                    "behind): retry after `Retry-After` seconds", _RETRY_AFTER)


def _predict_operation(contract: DataContract, max_records: int, max_body_bytes: int) -> dict:
    return {
        "operationId": "predict",
        "summary": "Predict for a list of records",
        "description": "Each answered request is recorded (features, prediction, version, time) "
                       "for monitoring.",
        "requestBody": {"required": True, "content": _json(
            "PredictRequest", {"records": [example_record(contract)], "proba": False})},
        "responses": {
            "200": {"description": "one prediction per record", "content": _json("PredictAnswer")},
            **_bad_body(max_body_bytes),
            "413": _refusal(f"more than {max_records} records (MLOPS_SERVE_MAX_RECORDS), or a body "
                            f"over {max_body_bytes} bytes (MLOPS_SERVE_MAX_BODY_BYTES)"),
            "422": _refusal("a body that is not `{\"records\": [...]}` with at least one record, or "
                            "a record that breaks the data contract: a missing feature, an unknown "
                            "field, a value of the wrong type (`record` and `field` name it); "
                            "`proba` asked of a regression model"),
            "500": _refusal("the model failed on these records"),
            "503": _overloaded("no model loaded yet, or overloaded"),
        },
    }


def _feedback_operation(contract: DataContract, max_body_bytes: int) -> dict:
    unusable = "not one of its classes" if contract.task == "classification" else "not a number"
    return {
        "operationId": "feedback",
        "summary": "Send the true labels of an answered request (once per request)",
        "requestBody": {"required": True, "content": _json("FeedbackRequest")},
        "responses": {
            "200": {"description": "the labels are stored", "content": _json("FeedbackAnswer")},
            **_bad_body(max_body_bytes),
            "404": _refusal("an unknown request id (not among the last MLOPS_SERVE_FEEDBACK_IDS "
                            "requests this server answered since it started)"),
            "409": _refusal("that request already has its labels"),
            "422": _refusal(f"not one label per record, or a label the model cannot have "
                            f"({unusable}; `label` names it)"),
            "503": _overloaded("overloaded"),
        },
    }


def _health_operation() -> dict:
    return {
        "operationId": "health",
        "summary": "Whether a model is loaded",
        "responses": {
            "200": {"description": "a model is loaded and answers", "content": _json("Health")},
            "503": {"description": "no model loaded yet", "content": _json("Health")},
        },
    }


def _model_operation() -> dict:
    return {
        "operationId": "model",
        "summary": "The version in service and the server's counters",
        "responses": {
            "200": {"description": "the model in service", "content": _json("ModelInfo")},
            "503": _refusal("no model loaded yet"),
        },
    }
