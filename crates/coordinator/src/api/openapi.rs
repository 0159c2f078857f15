//! The OpenAPI document of the REST API, generated: its frame (title, security scheme, tags)
//! is here; its operations come from the handlers' `#[utoipa::path]`s, registered with the
//! routes ([`super::api`]); its schemas from the types' `ToSchema`; and what the layers do to
//! a route (authentication, idempotency) is added to its operations by the functions below,
//! called where the layer is put on the route.

use std::sync::OnceLock;

use utoipa::OpenApi;
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn, Paths};
use utoipa::openapi::schema::{
    AdditionalProperties, AllOfBuilder, ArrayBuilder, ObjectBuilder, Schema, Type,
};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Required, ResponseBuilder};

use super::{ApiError, TokenRole};

/// The name of the bearer-token security scheme in the document.
pub const SECURITY_SCHEME: &str = "bearer";
/// The operation extension naming the token role a route needs (`admin`, `operator`,
/// `trader` or `viewer`; a stronger role may do what a weaker one may).
pub const ROLE_EXTENSION: &str = "x-concord-role";
/// The header every POST carries.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// The document's frame, before the routes add their operations.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Concord coordinator API",
        version = "1",
        description = "Operators' and traders' REST/JSON API of Concord's coordinator. Every \
            request but `/v1/health` and `/v1/openapi.json` carries a bearer token with a role; \
            every POST an `Idempotency-Key`. Errors are `ApiError` bodies."
    ),
    components(schemas(ApiError)),
    modifiers(&BearerScheme),
    tags(
        (name = "service", description = "Liveness and this document"),
        (name = "modules", description = "Secure modules: enrollment and connection"),
        (name = "groups", description = "Signer groups"),
        (name = "wallets", description = "Wallets: key generation, import, views, balances"),
        (name = "signatures", description = "Raw message signatures"),
        (name = "jobs", description = "Jobs: aux material, key generation, import, signing"),
        (name = "transfers", description = "Deposits to and withdrawals from exchanges"),
        (name = "exchanges", description = "Exchange accounts: balances, withdraw keys"),
        (name = "tokens", description = "API tokens"),
        (name = "policies", description = "Admin-signed policies, relayed to the modules"),
    )
)]
struct Frame;

/// Adds the bearer-token security scheme.
struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.description = Some(
            "An API token (`cct_…`) made with `POST /v1/tokens` or `concord tokens create`; \
             the coordinator keeps only its SHA-256."
                .into(),
        );
        components.add_security_scheme(SECURITY_SCHEME, SecurityScheme::Http(http));
    }
}

/// The frame of the document, for [`super::api`] to add the routes to.
pub(super) fn frame() -> utoipa::openapi::OpenApi {
    Frame::openapi()
}

/// The API's OpenAPI 3.1 document, as `GET /v1/openapi.json` serves it: built once from the
/// routes' declarations (paths in the order the router adds them, properties in the order
/// of their fields).
pub fn openapi_document() -> &'static utoipa::openapi::OpenApi {
    static DOCUMENT: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut doc = super::api().into_openapi();
        for op in operations(&mut doc.paths) {
            describe_errors(op);
        }
        close_variants(&mut doc);
        doc
    })
}

/// The enums whose variants are objects that serde reads with `deny_unknown_fields`, so that
/// a variant with a field it does not have is refused. utoipa says so of a struct
/// (`additionalProperties: false`) but not of an enum's variants: [`close_variants`] does.
pub const CLOSED_ENUMS: [&str; 4] = ["Action", "AddressRef", "AddressTarget", "WalletPurpose"];

/// Marks the object variants of each of [`CLOSED_ENUMS`] `additionalProperties: false`.
fn close_variants(doc: &mut utoipa::openapi::OpenApi) {
    let Some(components) = doc.components.as_mut() else {
        return;
    };
    for name in CLOSED_ENUMS {
        let Some(RefOr::T(Schema::OneOf(one_of))) = components.schemas.get_mut(name) else {
            continue;
        };
        for item in &mut one_of.items {
            if let RefOr::T(Schema::Object(variant)) = item {
                variant.additional_properties =
                    Some(Box::new(AdditionalProperties::FreeForm(false)));
            }
        }
    }
}

/// Every operation of `paths`.
fn operations(paths: &mut Paths) -> impl Iterator<Item = &mut Operation> {
    paths.paths.values_mut().flat_map(|item| {
        [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
            &mut item.query,
        ]
        .into_iter()
        .flatten()
        .chain(item.additional_operations.values_mut())
    })
}

/// What an error status means, whichever route answers it (from [`crate::Error`]'s variants
/// and the layers).
fn error_meaning(status: &str) -> &'static str {
    match status {
        "400" => "The request is malformed or names something invalid",
        "401" => "No `Authorization: Bearer <token>` header, or an unknown token",
        "403" => "The token's role does not allow this",
        "404" => "Something named does not exist",
        "409" => "The request conflicts with existing state",
        "422" => "The modules (or the agreement rule) refused: the dissenters and their reasons",
        "500" => "The database failed, a module misbehaved, or a bug: a retry may succeed",
        "503" => {
            "Modules, the chain or the exchange are not reachable or did not answer: a retry \
             may help"
        }
        _ => "An error",
    }
}

/// An error answer: an [`ApiError`] body.
fn error_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ApiError")))
                .build(),
        )
        .build()
        .into()
}

/// Gives the error answers a handler declared without a description the meaning of their
/// status.
fn describe_errors(op: &mut Operation) {
    for (status, response) in op.responses.responses.iter_mut() {
        if let RefOr::T(r) = response
            && r.description.is_empty()
            && !status.starts_with('2')
        {
            r.description = error_meaning(status).to_owned();
        }
    }
}

/// Adds the error answer `status` to `op`, or, if the handler declared it already, `why` to
/// its description.
fn add_error(op: &mut Operation, status: &str, why: &str) {
    match op.responses.responses.get_mut(status) {
        Some(RefOr::T(r)) => {
            if r.description.is_empty() {
                r.description = error_meaning(status).to_owned();
            }
            r.description = format!("{}; or: {why}", r.description);
        }
        Some(RefOr::Ref(_)) => {}
        None => {
            op.responses
                .responses
                .insert(status.to_owned(), error_response(why));
        }
    }
}

/// What the authentication layer does to the operations it wraps: the bearer scheme, the
/// role (in the description and as [`ROLE_EXTENSION`]) and its answers.
pub(super) fn document_authentication(paths: &mut Paths, role: TokenRole) {
    let who = match role {
        TokenRole::Viewer => "any token (every role reads)".to_owned(),
        TokenRole::Admin => "an `admin` token".to_owned(),
        other => format!("an `{}` or `admin` token", other.as_str()),
    };
    for op in operations(paths) {
        op.security = Some(vec![SecurityRequirement::new(
            SECURITY_SCHEME,
            Vec::<String>::new(),
        )]);
        let needs = format!("Needs {who}.");
        op.description = Some(match op.description.take() {
            Some(d) if !d.is_empty() => format!("{d}\n\n{needs}"),
            _ => needs,
        });
        let role_ext = ExtensionsBuilder::new()
            .add(ROLE_EXTENSION, role.as_str())
            .build();
        match &mut op.extensions {
            Some(e) => e.merge(role_ext),
            None => op.extensions = Some(role_ext),
        }
        add_error(op, "401", error_meaning("401"));
        if role != TokenRole::Viewer {
            add_error(op, "403", error_meaning("403"));
        }
        add_error(op, "500", error_meaning("500"));
    }
}

/// What the idempotency layer does to the operations it wraps: the required
/// [`IDEMPOTENCY_KEY`] header and its answers.
pub(super) fn document_idempotency(paths: &mut Paths) {
    for op in operations(paths) {
        let key = ParameterBuilder::new()
            .name(IDEMPOTENCY_KEY)
            .parameter_in(ParameterIn::Header)
            .required(Required::True)
            .description(Some(
                "1 to 128 characters, scoped to the token and the path: repeating a POST with \
                 the same key and body returns the first answer (a server error is not kept, \
                 so a retry may succeed); the same key with another body is refused.",
            ))
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
                    .max_length(Some(128)),
            ))
            .build();
        op.parameters.get_or_insert_with(Vec::new).push(key.into());
        add_error(
            op,
            "400",
            "no `Idempotency-Key` header, or a body larger than 1 MiB",
        );
        add_error(
            op,
            "409",
            "the idempotency key was used for another request, or its first request is still \
             being handled",
        );
    }
}

/// A signed intent whose action is of kind `kind` (`deposit`, `withdraw`, `sign_message`,
/// `import`): the `SignedIntent` schema, narrowed to the one action the route takes (the
/// route refuses an intent that asks for anything else).
fn intent_asking(kind: &str, description: &str) -> Schema {
    let kind_is = ObjectBuilder::new()
        .property(
            "intent",
            ObjectBuilder::new().property(
                "action",
                ObjectBuilder::new().property(
                    "kind",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some([kind])),
                ),
            ),
        )
        .build();
    AllOfBuilder::new()
        .item(Ref::from_schema_name("SignedIntent"))
        .item(kind_is)
        .description(Some(description))
        .build()
        .into()
}

/// `DepositRequest.intent`'s schema: a signed `deposit` intent.
pub(crate) fn deposit_intent() -> Schema {
    intent_asking(
        "deposit",
        "The trader's signed intent; its action is a `deposit`.",
    )
}

/// `WithdrawalRequest.intent`'s schema: a signed `withdraw` intent.
pub(crate) fn withdraw_intent() -> Schema {
    intent_asking(
        "withdraw",
        "The trader's signed intent; its action is a `withdraw`.",
    )
}

/// `SignRequest.intent`'s schema: a signed `sign_message` intent.
pub(crate) fn sign_message_intent() -> Schema {
    intent_asking(
        "sign_message",
        "The trader's signed intent; its action is a `sign_message`.",
    )
}

/// `ImportWallet.intent`'s schema: a signed `import` intent.
pub(crate) fn import_intent() -> Schema {
    intent_asking(
        "import",
        "The importer's signed intent; its action is an `import`.",
    )
}

/// The id of a module, as enrolling one checks it.
pub(crate) const MODULE_ID_PATTERN: &str = "^[A-Za-z0-9_-]{1,64}$";

/// `CreateGroup.members`' schema: 2 to 255 distinct module ids.
pub(crate) fn group_members() -> Schema {
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(MODULE_ID_PATTERN)),
        )
        .min_items(Some(2))
        .max_items(Some(255))
        .unique_items(true)
        .description(Some(
            "Member module ids, each enrolled and listed once; their order fixes their indices.",
        ))
        .build()
        .into()
}
