//! The contract suites both stages must pass, and the harness they run
//! on: a [`Backend`] gives each case a fresh, isolated storage,
//! [`spawn_app`] starts the real app on it. Test and benchmark code only:
//! the product crate (`minigram`) is the app itself.
//!
//! [`accounts`], [`photos`], [`ops`], [`concurrency`] and [`pages`] are
//! the black-box suite of the HTTP contract: every case starts the real
//! app on 127.0.0.1:0 over a fresh, isolated storage from a [`Backend`]
//! and talks to it with a real HTTP client. [`storage`] runs the `Store`
//! use cases directly; [`abuse`], [`observe`] and [`hostile`] hold the
//! overload, observability and hostile-client cases. A stage runs them
//! all with one line in its tests: `contract::contract_tests!(MyBackend);`.

pub mod abuse;
pub mod accounts;
#[cfg(feature = "bench")]
pub mod bench;
pub mod browser;
pub mod concurrency;
pub mod crash;
pub mod hostile;
pub mod load;
pub mod observe;
pub mod ops;
pub mod pages;
pub mod photos;
pub mod spike;
pub mod storage;

/// Runs every contract suite against a [`Backend`]: put
/// `contract::contract_tests!(MyBackend);` in a stage's `tests/`.
#[macro_export]
macro_rules! contract_tests {
    ($backend:ty) => {
        mod accounts {
            use super::*;
            $crate::accounts_contract_tests!($backend);
        }
        mod photos {
            use super::*;
            $crate::photos_contract_tests!($backend);
        }
        mod ops {
            use super::*;
            $crate::ops_contract_tests!($backend);
        }
        mod concurrency {
            use super::*;
            $crate::concurrency_contract_tests!($backend);
        }
        mod pages {
            use super::*;
            $crate::pages_contract_tests!($backend);
        }
        mod storage_contract {
            use super::*;
            $crate::storage_contract_tests!($backend);
        }
        mod abuse {
            use super::*;
            $crate::abuse_contract_tests!($backend);
        }
        mod observability {
            use super::*;
            $crate::observe_contract_tests!($backend);
        }
        mod hostile {
            use super::*;
            $crate::hostile_contract_tests!($backend);
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __contract_cases {
    ($backend:ty; $suite:ident; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                $crate::$suite::$case::<$backend>().await;
            }
        )*
    };
}

use reqwest::{Client, Response, StatusCode, multipart};
use serde_json::{Value, json};
use std::future::Future;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use minigram::auth::{self, Hasher};
use minigram::domain::Username;
use minigram::store::{NewSession, NewUser, SessionUser, Store};
use minigram::{App, Application, Settings};

/// A fresh, isolated storage for one test (its own SQLite file, or its own
/// Postgres database and Redis namespace), removed when dropped.
pub trait Backend: Sized + Send + Sync + 'static {
    type Store: Store;

    /// Creates new, empty storage.
    fn fresh() -> impl Future<Output = Self> + Send;

    fn store(&self) -> Self::Store;

    /// Where this storage keeps uploaded files.
    fn uploads_dir(&self) -> PathBuf;

    /// Rows in one of the tables `users`, `sessions`, `photos`, `follows`,
    /// `likes`: to prove that a refused request changed nothing.
    fn count(&self, table: &'static str) -> impl Future<Output = i64> + Send;
}

pub struct TestApp<B: Backend> {
    pub address: String,
    pub client: Client,
    pub store: B::Store,
    /// The app's password hasher (to count the hashes a test spent).
    pub hasher: Hasher,
    pub backend: B,
    handle: actix_web::dev::ServerHandle,
}

pub struct TestUser {
    pub id: i64,
    pub username: String,
    pub token: String,
}

/// Registers `username` (password `password123`) through the API of the
/// server at `base` (a test's own process or fleet) and returns the user.
pub async fn register_at(client: &Client, base: &str, username: &str) -> TestUser {
    let res = client
        .post(format!("{base}/api/register"))
        .json(&json!({"username": username, "password": "password123"}))
        .send()
        .await
        .expect("register");
    assert_eq!(res.status(), StatusCode::CREATED, "registering {username}");
    let body: Value = res.json().await.unwrap();
    TestUser {
        id: body["userId"].as_i64().unwrap(),
        username: username.to_owned(),
        token: body["token"].as_str().unwrap().to_owned(),
    }
}

/// The default settings with another sign-in throttle.
pub fn throttled(throttle: minigram::auth::Throttle) -> Settings {
    Settings {
        login_throttle: throttle,
        ..Settings::default()
    }
}

pub async fn spawn_app<B: Backend>() -> TestApp<B> {
    spawn_app_with::<B>(Settings::default()).await
}

pub async fn spawn_app_with<B: Backend>(settings: Settings) -> TestApp<B> {
    spawn_app_on(B::fresh().await, settings).await
}

/// The app on storage the test prepared itself (a backend with its own
/// configuration).
pub async fn spawn_app_on<B: Backend>(backend: B, settings: Settings) -> TestApp<B> {
    let uploads = backend.uploads_dir();
    std::fs::create_dir_all(&uploads).expect("create uploads dir");
    let store = backend.store();
    let hasher = Hasher::new(2, 256).expect("hasher");
    let app = App {
        store: store.clone(),
        hasher: hasher.clone(),
        images: minigram::image_pool::ImagePool::new(2, 64).expect("image pool"),
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
        .expect("http client");
    TestApp {
        address,
        client,
        store,
        hasher,
        backend,
        handle,
    }
}

/// One Argon2 hash of `password123`, shared by users made with `make_user`.
fn shared_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| auth::hash_blocking("password123").expect("hash"))
}

impl<B: Backend> TestApp<B> {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn stop(&self) {
        self.handle.stop(true).await;
    }

    pub fn uploads_dir(&self) -> PathBuf {
        self.backend.uploads_dir()
    }

    pub async fn count(&self, table: &'static str) -> i64 {
        self.backend.count(table).await
    }

    /// A user created straight in storage (no HTTP, no per-user hash) with
    /// a session token: for arranging tests that need many users.
    pub async fn make_user(&self, name: &str) -> TestUser {
        let username = Username::parse(name).expect("valid test username");
        let id = self
            .store
            .create_user(NewUser {
                username: username.clone(),
                email: None,
                password_hash: shared_hash().to_owned(),
            })
            .await
            .expect("create user");
        let token = auth::new_token();
        self.store
            .create_session(NewSession {
                token_hash: auth::token_hash(&token),
                user: SessionUser {
                    user_id: id,
                    username,
                },
                expires_at: minigram::app::now_secs() + 3600,
            })
            .await
            .expect("create session");
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
        register_at(&self.client, &self.address, username).await
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

    /// Registers `name` through the HTML form (as a browser would, with
    /// `X-Forwarded-Proto: proto` when a TLS proxy is in front).
    pub async fn form_login(&self, name: &str, forwarded_proto: Option<&str>) -> Response {
        let mut req = self
            .client
            .post(self.url("/register"))
            .header("origin", self.address.clone())
            .form(&[
                ("username", name),
                ("password", "password123"),
                ("email", ""),
            ]);
        if let Some(proto) = forwarded_proto {
            req = req.header("x-forwarded-proto", proto);
        }
        let res = req.send().await.unwrap();
        assert_eq!(
            res.status(),
            StatusCode::SEE_OTHER,
            "form sign-up of {name}"
        );
        res
    }

    /// Uploads a generated PNG and returns the photo JSON.
    pub async fn posted_photo(&self, user: &TestUser, caption: &str) -> Value {
        let res = self
            .upload(Some(&user.token), photo_form(png(64, 48), "x.png", caption))
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        res.json().await.unwrap()
    }
}

pub fn png(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    minigram::images::generated(3, w, h)
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .expect("encode png");
    out
}

pub fn photo_form(bytes: Vec<u8>, file_name: &str, caption: &str) -> multipart::Form {
    multipart::Form::new()
        .part(
            "photo",
            multipart::Part::bytes(bytes)
                .file_name(file_name.to_owned())
                .mime_str("image/png")
                .expect("mime"),
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

/// Files in a directory (0 if it does not exist).
pub fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}
