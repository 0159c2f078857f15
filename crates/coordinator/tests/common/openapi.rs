//! The API's answers checked against its own OpenAPI document: every call the tests make
//! through [`super::call`] must be to a documented route with a documented method, answer a
//! status the document lists for it, with a body its schema accepts (JSON Schema 2020-12, as
//! OpenAPI 3.1 schemas are). So the document cannot drift from the handlers and the types.

use axum::http::{Method, StatusCode};
use concord_coordinator::api;
use serde_json::{Value, json};

/// The document, as `GET /v1/openapi.json` serves it.
pub fn document() -> &'static Value {
    static DOCUMENT: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    DOCUMENT.get_or_init(|| serde_json::to_value(api::openapi_document()).unwrap())
}

/// The documented path template `path` falls under (the one with the most literal segments
/// when several do: `/v1/wallets/import` rather than `/v1/wallets/{id}`).
pub fn template_of(path: &str) -> Option<&'static str> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    document()["paths"]
        .as_object()?
        .keys()
        .filter_map(|t| {
            let ts: Vec<&str> = t.split('/').collect();
            let fits = ts.len() == segments.len()
                && ts.iter().zip(&segments).all(|(t, s)| {
                    (t.starts_with('{') && t.ends_with('}') && !s.is_empty()) || t == s
                });
            fits.then(|| (ts.iter().filter(|t| t.starts_with('{')).count(), t.as_str()))
        })
        .min()
        .map(|(_, t)| t)
}

/// Whether `instance` is valid against `schema` (a schema of the document, whose `$ref`s
/// name `#/components/schemas/…`): the errors, each with where it is.
pub fn errors_against(schema: &Value, instance: &Value) -> Vec<String> {
    // The schema, with the document's components beside it so that its refs resolve.
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": document()["components"],
        "allOf": [schema],
    });
    let validator = jsonschema::draft202012::options()
        .should_validate_formats(false)
        .build(&root)
        .unwrap_or_else(|e| panic!("the document's schema {schema} does not compile: {e}"));
    validator
        .iter_errors(instance)
        .map(|e| format!("at {}: {e}", e.instance_path()))
        .collect()
}

/// Checks `instance` against the document's schema named `name`.
pub fn assert_conforms(name: &str, instance: &Value) {
    assert!(
        document()["components"]["schemas"][name].is_object(),
        "the document has no schema {name}"
    );
    let schema = json!({ "$ref": format!("#/components/schemas/{name}") });
    let errors = errors_against(&schema, instance);
    assert!(
        errors.is_empty(),
        "this {name} does not match its schema in the OpenAPI document:\n{}\n{instance:#}",
        errors.join("\n")
    );
}

/// Checks an answer of the router against the document (see the module's doc).
pub fn check_answer(method: &Method, path: &str, status: StatusCode, body: &Value) {
    let Some(template) = template_of(path) else {
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "{method} {path} is not in the OpenAPI document, but the router serves it"
        );
        return;
    };
    let operation = &document()["paths"][template][method.as_str().to_ascii_lowercase()];
    if !operation.is_object() {
        assert_eq!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {template} is not in the OpenAPI document, but the router serves it"
        );
        return;
    }
    let response = &operation["responses"][status.as_str()];
    assert!(
        response.is_object(),
        "{method} {path} answered {status}, which its OpenAPI document ({template}) does not \
         list: {body}"
    );
    let text = &response["content"]["text/plain"]["schema"];
    if text.is_object() && body.is_string() {
        // A text answer: its schema is a string.
        assert_eq!(text["type"], "string", "{method} {template} {status}");
        return;
    }
    let schema = &response["content"]["application/json"]["schema"];
    assert!(
        schema.is_object(),
        "{method} {template} {status} has no JSON schema in the document"
    );
    let errors = errors_against(schema, body);
    assert!(
        errors.is_empty(),
        "{method} {path} answered {status} with a body that its OpenAPI document does not \
         accept:\n{}\n{body:#}",
        errors.join("\n")
    );
}
