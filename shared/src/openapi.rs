//! The OpenAPI document served at `/api/openapi.json`, generated from the
//! handlers' annotations so it cannot drift from the code.

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder, Type};
use utoipa::{Modify, OpenApi};

use crate::{api, ops};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Minigram",
        description = "The photo-sharing app of the Minigram scaling lab. Errors are \
                       `{\"error\": \"...\", \"code\": \"...\"}` with a stable `code`."
    ),
    paths(
        api::register, api::login, api::logout, api::me,
        api::get_user, api::follow, api::unfollow, api::user_photos,
        api::upload, api::get_photo, api::like, api::unlike,
        api::feed, api::explore, api::uploaded_image, api::openapi,
        ops::health, ops::ready, ops::metrics_text, ops::metrics_json, ops::metrics_page,
    ),
    components(schemas(crate::error::ErrorBody)),
    modifiers(&BearerAuth, &Shedding),
    tags(
        (name = "auth", description = "Register, sign in and out"),
        (name = "users", description = "Profiles and follows"),
        (name = "photos", description = "Uploads, likes, feed and explore"),
        (name = "ops", description = "Health, readiness and metrics: never shed"),
        (name = "docs", description = "This document"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every operation the admission limit applies to (all but the operator
/// routes, [`ops::TAG`]) may be answered `503` (`overloaded` when the
/// process is full, `timeout` past the deadline), always with
/// `Retry-After`: said once here for all of them.
struct Shedding;

impl Modify for Shedding {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            .filter(|op| !op.tags.iter().flatten().any(|t| t == ops::TAG))
            {
                let description = match op.responses.responses.get("503") {
                    Some(utoipa::openapi::RefOr::T(r)) => {
                        format!("{}; or `overloaded` / `timeout`", r.description)
                    }
                    _ => "`overloaded` (too many requests in progress) or `timeout`".to_owned(),
                };
                let response = ResponseBuilder::new()
                    .description(format!("{description}; retry after `Retry-After` seconds"))
                    .header(
                        "Retry-After",
                        HeaderBuilder::new()
                            .schema(utoipa::openapi::schema::Object::with_type(Type::Integer))
                            .build(),
                    )
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ErrorBody")))
                            .build(),
                    )
                    .build();
                op.responses.responses.insert("503".into(), response.into());
            }
        }
    }
}
