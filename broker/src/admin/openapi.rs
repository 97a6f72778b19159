//! `GET /api/openapi.json`: the OpenAPI 3.1 document of this API, generated from the routes with `aide`.
//!
//! Every resource router is an [`ApiRouter`], so a route is documented where it is registered: method and path
//! come from the router; request bodies, query parameters and answers from the handlers' extractor and return types
//! (schemars schemas of the `warren-shared` types); and each route adds its summary and what its types cannot say
//! (a 201/204 pair, a typed list behind the `serde_json::Value` that `paging` builds). [`finish`] then adds what
//! holds for every operation: its path parameters (from the path template; the handlers take them as strings), an
//! operation id, basic auth, and the `ApiError` body as the `default` response, since any request may be refused
//! (401, 403, 413, ...). The document is built once per [`super::app`] and served as it was built.

use aide::axum::routing::get_with;
use aide::axum::ApiRouter;
use aide::generate::GenContext;
use aide::openapi::{
    Info, MediaType, OpenApi, Operation, Parameter, ParameterData, ParameterSchemaOrContent, PathStyle, ReferenceOr,
    Response, SchemaObject, SecurityScheme,
};
use aide::transform::{TransformOpenApi, TransformOperation};
use aide::{OperationInput, OperationOutput};
use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use schemars::JsonSchema;
use serde_json::Value;
use warren_shared::ApiError;

use super::caller::Caller;
use super::{AdminState, Body, Error, OptionalBody, Query};

pub fn router() -> ApiRouter<AdminState> {
    ApiRouter::new().api_route(
        "/api/openapi.json",
        get_with(document, |o| {
            o.summary("This document")
                .response_with::<200, Json<Value>, _>(|r| r.description("The OpenAPI 3.1 document"))
        }),
    )
}

/// The document, serialized once.
#[derive(Clone)]
pub struct Document(pub Bytes);

async fn document(Extension(Document(doc)): Extension<Document>) -> axum::response::Response {
    ([(header::CONTENT_TYPE, "application/json")], doc).into_response()
}

/// Fills in what every operation has in common (see the module doc); given to `finish_api_with`, which runs it
/// before it collects the schemas, so the `ApiError` schema lands in the components.
pub fn finish(api: TransformOpenApi) -> TransformOpenApi {
    let api = api
        .info(Info {
            title: "Warren admin API".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: Some(
                "Queues, exchanges, bindings, connections, users, vhosts, permissions, policies, definitions, live \
                 metrics and operator actions, on RabbitMQ's management paths where RabbitMQ has them. HTTP basic \
                 auth with broker users: tag `administrator` may act, `monitoring` may read."
                    .into(),
            ),
            ..Info::default()
        })
        .security_scheme(
            "basic",
            SecurityScheme::Http {
                scheme: "basic".into(),
                bearer_format: None,
                description: None,
                extensions: Default::default(),
            },
        )
        .security_requirement("basic")
        .default_response_with::<Json<ApiError>, _>(|r| r.description("An error: {error, reason}"));
    let mut api = api;
    for (path, item) in api.inner_mut().paths.iter_mut().flat_map(|p| p.paths.iter_mut()) {
        let ReferenceOr::Item(item) = item else { continue };
        for (method, op) in aide::util::iter_operations_mut(item) {
            path_parameters(path, method, op);
            op.operation_id = Some(format!("{method}{}", path.replace(['/', '{', '}', '.', '-'], "_")));
        }
    }
    api
}

/// Declares the `{name}` segments of `path` that the operation's extractors did not (the handlers take them as
/// strings, so aide cannot see them).
fn path_parameters(path: &str, method: &str, op: &mut Operation) {
    let named: Vec<&str> = path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect();
    for name in named {
        let declared = op
            .parameters
            .iter()
            .any(|p| p.as_item().is_some_and(|p| p.parameter_data_ref().name == name));
        if declared {
            continue;
        }
        op.parameters.push(ReferenceOr::Item(Parameter::Path {
            parameter_data: ParameterData {
                name: name.to_string(),
                description: None,
                required: true,
                deprecated: None,
                format: ParameterSchemaOrContent::Schema(SchemaObject {
                    json_schema: string().into(),
                    example: None,
                    external_docs: None,
                }),
                example: example(path, method, name),
                examples: Default::default(),
                explode: None,
                extensions: Default::default(),
            },
            style: PathStyle::Simple,
        }));
    }
}

/// Examples that name something that exists on a fresh broker (the default vhost), so that tools trying the
/// examples reach real objects. Deleting the default vhost is no example to give.
fn example(path: &str, method: &str, name: &str) -> Option<Value> {
    match name {
        "vhost" if !(method == "delete" && path == "/api/vhosts/{vhost}") => Some("/".into()),
        _ => None,
    }
}

/// A 200 answer that is text of type `media` (what a handler that builds its own response cannot say).
pub fn text<'t>(o: TransformOperation<'t>, media: &str, description: &str) -> TransformOperation<'t> {
    o.response_with::<200, String, _>(|mut r| {
        let res = r.inner();
        res.content.clear();
        res.content.insert(
            media.to_string(),
            MediaType {
                schema: Some(SchemaObject {
                    json_schema: string().into(),
                    example: None,
                    external_docs: None,
                }),
                ..MediaType::default()
            },
        );
        r.description(description)
    })
}

/// `{"type": "string"}`, without the title schemars gives it.
fn string() -> schemars::schema::SchemaObject {
    schemars::schema::SchemaObject {
        instance_type: Some(schemars::schema::InstanceType::String.into()),
        ..Default::default()
    }
}

// The admin layer's own extractors, as aide sees them.

/// Who calls is the request's basic auth, which the document declares once for all operations.
impl OperationInput for Caller {}

impl<T: JsonSchema> OperationInput for Body<T> {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        Json::<T>::operation_input(ctx, operation);
    }
}

impl<T: JsonSchema> OperationInput for OptionalBody<T> {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        Json::<T>::operation_input(ctx, operation);
        if let Some(ReferenceOr::Item(body)) = &mut operation.request_body {
            body.required = false;
        }
    }
}

impl<T: JsonSchema> OperationInput for Query<T> {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        axum::extract::Query::<T>::operation_input(ctx, operation);
    }
}

/// An error is the `default` response that [`finish`] gives every operation.
impl OperationOutput for Error {
    type Inner = ApiError;

    fn operation_response(ctx: &mut GenContext, operation: &mut Operation) -> Option<Response> {
        Json::<ApiError>::operation_response(ctx, operation)
    }
}

/// The document of a whole app, for the tests.
#[cfg(test)]
pub fn build() -> Value {
    let mut api = OpenApi::default();
    let _ = super::routes().finish_api_with(&mut api, finish);
    serde_json::to_value(&api).unwrap_or(Value::Null)
}

/// The finished document as [`document`] serves it.
pub fn serialize(api: &OpenApi) -> Document {
    Document(Bytes::from(serde_json::to_vec(api).unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_with_every_schema_it_refers_to() {
        let doc = build();
        assert_eq!(doc["openapi"], "3.1.0");
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        for (i, _) in text.match_indices("#/components/schemas/") {
            let rest = &text[i + "#/components/schemas/".len()..];
            let name = &rest[..rest.find('"').expect("closing quote")];
            assert!(schemas.contains_key(name), "dangling $ref to {name}");
        }
        assert!(doc["paths"]["/api/queues/{vhost}/{name}/move"]["post"]["responses"]["202"].is_object());
    }
}
