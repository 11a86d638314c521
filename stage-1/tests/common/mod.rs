//! `spawn_app()`: the real stage-1 server on 127.0.0.1:0 with its own fresh
//! SQLite file in a temporary directory, and typed helpers to talk to it.

#![allow(dead_code)] // each test binary uses a different subset

use minigram::auth::{self, Hasher};
use minigram::domain::Username;
use minigram::store::{NewSession, NewUser, Store};
use minigram::{App, Application, Settings};
use reqwest::{Client, Response, StatusCode, multipart};
use serde_json::{Value, json};
use stage_1::{SqliteConfig, SqliteStore};
use std::io::Cursor;
use std::sync::OnceLock;
use tempfile::TempDir;

pub struct TestApp {
    pub address: String,
    pub client: Client,
    pub store: SqliteStore,
    pub dir: TempDir,
    handle: actix_web::dev::ServerHandle,
}

pub struct TestUser {
    pub id: i64,
    pub username: String,
    pub token: String,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Settings::default()).await
}

pub async fn spawn_app_with(settings: Settings) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(SqliteConfig::new(dir.path().join("minigram.sqlite3")))
        .expect("open sqlite");
    let uploads = dir.path().join("uploads");
    std::fs::create_dir_all(&uploads).unwrap();
    let app = App {
        store: store.clone(),
        hasher: Hasher::new(2, 256).expect("hasher"),
        uploads_dir: uploads,
        settings,
    };
    let server = Application::build(app, "127.0.0.1:0", 2).expect("build app");
    let address = format!("http://127.0.0.1:{}", server.port());
    let handle = server.handle();
    tokio::spawn(server.run_until_stopped());
    let client = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    TestApp {
        address,
        client,
        store,
        dir,
        handle,
    }
}

/// One Argon2 hash of `password123`, shared by users made with `make_user`.
fn shared_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| auth::hash_blocking("password123").unwrap())
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn stop(&self) {
        self.handle.stop(true).await;
    }

    /// A user created straight in storage (no HTTP, no per-user hash) with
    /// a session token: for arranging tests that need many users.
    pub async fn make_user(&self, name: &str) -> TestUser {
        let id = self
            .store
            .create_user(NewUser {
                username: Username::parse(name).unwrap(),
                email: None,
                password_hash: shared_hash().to_owned(),
            })
            .await
            .unwrap();
        let token = auth::new_token();
        self.store
            .create_session(NewSession {
                token_hash: auth::token_hash(&token),
                user_id: id,
                expires_at: minigram::app::now_secs() + 3600,
            })
            .await
            .unwrap();
        TestUser {
            id: id.0,
            username: name.to_owned(),
            token,
        }
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Response {
        let mut req = self.client.post(self.url(path)).body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        req.send().await.unwrap()
    }

    pub async fn register(&self, username: &str, password: &str) -> Response {
        self.post_json(
            "/api/register",
            &json!({"username": username, "password": password}),
        )
        .await
    }

    /// Registers through the API and returns the user.
    pub async fn registered(&self, username: &str) -> TestUser {
        let res = self.register(username, "password123").await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let body: Value = res.json().await.unwrap();
        TestUser {
            id: body["userId"].as_i64().unwrap(),
            username: username.to_owned(),
            token: body["token"].as_str().unwrap().to_owned(),
        }
    }

    pub async fn login(&self, username: &str, password: &str) -> Response {
        self.post_json(
            "/api/login",
            &json!({"username": username, "password": password}),
        )
        .await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        let mut req = self.client.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap()
    }

    pub async fn send(&self, method: reqwest::Method, path: &str, token: Option<&str>) -> Response {
        let mut req = self.client.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap()
    }

    pub async fn upload(&self, token: Option<&str>, form: multipart::Form) -> Response {
        let mut req = self.client.post(self.url("/api/photos")).multipart(form);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap()
    }

    /// Uploads a generated PNG and returns the photo JSON.
    pub async fn posted_photo(&self, user: &TestUser, caption: &str) -> Value {
        let res = self
            .upload(Some(&user.token), photo_form(png(64, 48), "x.png", caption))
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        res.json().await.unwrap()
    }

    pub async fn count(&self, table: &str) -> i64 {
        let path = self.dir.path().join("minigram.sqlite3");
        let sql = format!("SELECT COUNT(*) FROM {table}");
        tokio::task::spawn_blocking(move || {
            rusqlite::Connection::open(path)
                .unwrap()
                .query_row(&sql, [], |r| r.get(0))
                .unwrap()
        })
        .await
        .unwrap()
    }
}

pub fn png(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    minigram::images::generated(3, w, h)
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

pub fn photo_form(bytes: Vec<u8>, file_name: &str, caption: &str) -> multipart::Form {
    multipart::Form::new()
        .part(
            "photo",
            multipart::Part::bytes(bytes)
                .file_name(file_name.to_owned())
                .mime_str("image/png")
                .unwrap(),
        )
        .text("caption", caption.to_owned())
}

/// Asserts the status and the stable error code of a response.
pub async fn assert_error(res: Response, status: u16, code: &str, case: &str) {
    assert_eq!(res.status().as_u16(), status, "{case}: status");
    let body: Value = res
        .json()
        .await
        .unwrap_or_else(|e| panic!("{case}: body is not JSON: {e}"));
    assert_eq!(body["code"], code, "{case}: code in {body}");
    assert!(
        body["error"].as_str().is_some_and(|m| !m.is_empty()),
        "{case}: message"
    );
}
