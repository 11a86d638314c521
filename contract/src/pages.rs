//! The HTML pages: a person using Minigram with forms, the session
//! cookie and the CSRF rules, anonymous browsing.

use reqwest::{Response, StatusCode, multipart};

use super::{Backend, TestApp, png, spawn_app};

/// The session cookie set by a response, as `name=value`.
fn session_cookie(res: &Response) -> String {
    let set = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("minigram_session="))
        .expect("a session cookie");
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(set.contains("SameSite=Lax"), "{set}");
    set.split(';').next().unwrap().to_owned()
}

async fn page<B: Backend>(
    app: &TestApp<B>,
    path: &str,
    cookie: Option<&str>,
) -> (StatusCode, String) {
    let mut req = app.client.get(app.url(path));
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    if status.is_success() {
        let csp = res.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    }
    (status, res.text().await.unwrap())
}

/// The hidden CSRF field of the first form on a page.
fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..at + 64].to_owned()
}

fn location(res: &Response) -> &str {
    res.headers()["location"].to_str().unwrap()
}

/// Register, see the feed, upload, like, follow, log out: all with forms.
pub async fn a_person_uses_minigram_with_forms<B: Backend>() {
    let app = spawn_app::<B>().await;
    let (status, html) = page(&app, "/register", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("<form method=\"post\" action=\"/register\""));

    let res = app
        .client
        .post(app.url("/register"))
        .header("origin", app.address.clone())
        .form(&[
            ("username", "carol"),
            ("password", "password123"),
            ("email", ""),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let cookie = session_cookie(&res);

    let (status, html) = page(&app, "/", Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("@carol"), "the nav shows who is signed in");
    let csrf = csrf_of(&html);

    // Upload through the page form.
    let form = multipart::Form::new()
        .text("csrf", csrf.clone())
        .text("caption", "<script>alert(1)</script>")
        .part(
            "photo",
            multipart::Part::bytes(png(30, 20)).file_name("p.png"),
        );
    let res = app
        .client
        .post(app.url("/upload"))
        .header("cookie", &cookie)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "{}",
        res.text().await.unwrap()
    );
    let (_, html) = page(&app, "/", Some(&cookie)).await;
    assert!(html.contains("alert(1)"), "the caption is shown");
    assert!(!html.contains("<script>"), "captions are escaped");
    let photo_id: i64 = {
        let at = html.find("id=\"photo-").unwrap() + 10;
        html[at..].split('"').next().unwrap().parse().unwrap()
    };

    // Like through the form, then the page shows it.
    let res = app
        .client
        .post(app.url(&format!("/photos/{photo_id}/like")))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str()), ("action", "like"), ("next", "/")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/");
    let (_, html) = page(&app, "/", Some(&cookie)).await;
    assert!(html.contains("data-likes=\"1\""));
    assert!(html.contains("value=\"unlike\""));

    // Follow someone from their profile.
    let dave = app.make_user("dave").await;
    let (status, html) = page(&app, &format!("/users/{}", dave.id), Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("value=\"follow\""));
    let res = app
        .client
        .post(app.url(&format!("/users/{}/follow", dave.id)))
        .header("cookie", &cookie)
        .form(&[
            ("csrf", csrf.as_str()),
            ("action", "follow"),
            ("next", "//evil.example/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(location(&res), "/", "redirects never leave the site");
    let (_, html) = page(&app, &format!("/users/{}", dave.id), Some(&cookie)).await;
    assert!(html.contains("<b>1</b> followers"));

    // Log out: the cookie is cleared and the token revoked.
    let res = app
        .client
        .post(app.url("/logout"))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let (status, _) = page(&app, "/upload", Some(&cookie)).await;
    assert_eq!(
        status,
        StatusCode::SEE_OTHER,
        "the old cookie no longer signs in"
    );
}

/// Forms posted without the CSRF value, or from another site, change nothing.
pub async fn cross_site_posts_are_refused<B: Backend>() {
    let app = spawn_app::<B>().await;
    let res = app
        .client
        .post(app.url("/login"))
        .header("origin", "http://evil.example")
        .form(&[("username", "x"), ("password", "y")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    let res = app
        .client
        .post(app.url("/register"))
        .header("origin", "http://evil.example")
        .form(&[("username", "mallory"), ("password", "password123")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.count("users").await, 0);

    let victim = app.make_user("victim").await;
    let photo = app.posted_photo(&victim, "").await;
    let cookie = format!("minigram_session={}", victim.token);
    for csrf in [
        "",
        "0000000000000000000000000000000000000000000000000000000000000000",
    ] {
        let res = app
            .client
            .post(app.url(&format!("/photos/{}/like", photo["id"])))
            .header("cookie", &cookie)
            .form(&[("csrf", csrf), ("action", "like")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
    }
    assert_eq!(app.count("likes").await, 0);
}

/// A wrong password on the login page shows an error, not a crash.
pub async fn login_page_shows_errors<B: Backend>() {
    let app = spawn_app::<B>().await;
    app.registered("erin").await;
    let res = app
        .client
        .post(app.url("/login"))
        .form(&[("username", "erin"), ("password", "wrong-password")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let html = res.text().await.unwrap();
    assert!(html.contains("role=\"alert\"") && html.contains("wrong username or password"));
    let res = app
        .client
        .post(app.url("/login"))
        .form(&[("username", "erin"), ("password", "password123")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    session_cookie(&res);
}

/// Anonymous visitors can browse explore and profiles, and are sent to
/// log in for the feed and the upload form.
pub async fn anonymous_browsing<B: Backend>() {
    let app = spawn_app::<B>().await;
    let frank = app.make_user("frank").await;
    app.posted_photo(&frank, "public").await;
    let (status, html) = page(&app, "/explore", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("public") && html.contains("/uploads/"));
    let (status, html) = page(&app, &format!("/users/{}", frank.id), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("@frank") && !html.contains("value=\"follow\""));
    let (status, _) = page(&app, "/users/999999", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let res = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(location(&res), "/explore");
    let res = app.client.get(app.url("/upload")).send().await.unwrap();
    assert_eq!(location(&res), "/login");
    let css = app
        .client
        .get(app.url("/static/minigram.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
}

/// Generates one `#[tokio::test]` per case of this suite for a backend
/// (used by `contract_tests!`).
#[macro_export]
macro_rules! pages_contract_tests {
    ($backend:ty) => {
        $crate::__contract_cases!($backend; pages;
            a_person_uses_minigram_with_forms,
            cross_site_posts_are_refused,
            login_page_shows_errors,
            anonymous_browsing
        );
    };
}
