//! The OpenAPI document served at `/api/openapi.json`, generated from the
//! handlers' annotations so it cannot drift from the code.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api;

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
        api::feed, api::explore, api::uploaded_image,
        api::health, api::ready, api::openapi,
        api::metrics_text, api::metrics_json, api::metrics_page,
    ),
    components(schemas(crate::error::ErrorBody)),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Register, sign in and out"),
        (name = "users", description = "Profiles and follows"),
        (name = "photos", description = "Uploads, likes, feed and explore"),
        (name = "ops", description = "Health, readiness and this document"),
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
