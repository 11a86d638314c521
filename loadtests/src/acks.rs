//! The log of acknowledged writes (`--ack-log FILE`), and `verify`, which
//! checks that every one of them is in the server's data.
//!
//! A write counts as acknowledged when the server answered it with a 2xx:
//! from then on, the contract says it must survive a crash. Each one is a
//! JSON line, written with one `write` call as soon as the answer arrives
//! (no buffer, so even a killed generator keeps every complete line):
//!
//! ```text
//! {"write":"register","userId":7,"username":"lt3_9f","password":"…","token":"…"}
//! {"write":"login","userId":2,"username":"user2","password":"…","token":"…"}
//! {"write":"logout","userId":2,"token":"…"}
//! {"sent":"logout","userId":2,"token":"…"}
//! {"write":"follow","userId":7,"followee":3}
//! {"write":"like","userId":7,"photoId":1234}
//! {"write":"upload","userId":7,"photoId":1301,"url":"/uploads/ab….jpg"}
//! ```
//!
//! `verify` signs in as every user in the log (proving the account and its
//! password hash are there), then checks each line through the public API
//! only: the photo and its image file exist, the like and the follow are
//! seen by their author, a session is valid or revoked as its last line
//! says, and the counters are at least what the acknowledged writes imply.
//!
//! A `sent` line is not an acknowledgement: it is written just before a
//! logout is sent. A logout in flight when the server is killed may have
//! committed without its answer ever arriving, so after it the session may
//! be found valid or revoked, until a later line says which.

use anyhow::Context;
use futures_util::{StreamExt, stream};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

static LOG: OnceLock<Mutex<File>> = OnceLock::new();

/// Starts a new log at `path` (truncating it).
pub fn open(path: &Path) -> anyhow::Result<()> {
    let file =
        File::create(path).with_context(|| format!("cannot write --ack-log {}", path.display()))?;
    LOG.set(Mutex::new(file))
        .map_err(|_| anyhow::anyhow!("the ack log is already open"))
}

/// Records that a logout is about to be sent (see the module's note on
/// `sent` lines).
pub fn record_logout_sent(user: i64, token: &str) {
    record(json!({"sent": "logout", "userId": user, "token": token}));
}

/// Records one acknowledged write (a no-op without `--ack-log`).
pub fn record(entry: Value) {
    let Some(log) = LOG.get() else { return };
    let line = entry.to_string() + "\n";
    let mut file = log.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(e) = file.write_all(line.as_bytes()) {
        eprintln!("loadtests: cannot append to the ack log: {e}");
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    /// The log a load run wrote with `--ack-log`.
    #[arg(long)]
    pub ack_log: PathBuf,
    /// The server to check (e.g. the restarted one).
    #[arg(long)]
    pub host: String,
    /// Requests in flight while checking.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
}

/// What one line of the log says was written.
#[derive(Debug, Clone)]
struct Ack {
    kind: String,
    user: i64,
    value: Value,
}

/// What the log says of a session token, as of its last line.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Session {
    Valid,
    Revoked,
    /// A logout was sent and never answered: it may have committed.
    EitherWay,
}

/// The acknowledged writes, what the log leaves each session as, and
/// whether the last line was torn.
struct Log {
    acks: Vec<Ack>,
    /// Per session token: what its last line leaves it as.
    sessions: HashMap<String, (i64, Session)>,
    torn: bool,
}

fn read_log(path: &Path) -> anyhow::Result<Log> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --ack-log {}", path.display()))?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut log = Log {
        acks: Vec::new(),
        sessions: HashMap::new(),
        torn: false,
    };
    for (i, line) in lines.iter().enumerate() {
        let value: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            // A generator killed mid-line leaves a torn last line: that
            // write's answer was never fully recorded, so it is not counted.
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => {
                log.torn = true;
                continue;
            }
            Err(e) => anyhow::bail!("{} line {}: not an ack record: {e}", path.display(), i + 1),
        };
        let sent = value["sent"].is_string();
        let kind = value[if sent { "sent" } else { "write" }]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let user = value["userId"].as_i64().unwrap_or_default();
        anyhow::ensure!(
            !kind.is_empty() && user > 0,
            "{} line {}: not an ack record",
            path.display(),
            i + 1
        );
        if let Some(token) = value["token"].as_str() {
            let state = match (sent, kind.as_str()) {
                (true, _) => Session::EitherWay,
                (false, "logout") => Session::Revoked,
                (false, _) => Session::Valid,
            };
            log.sessions.insert(token.to_owned(), (user, state));
        }
        if !sent {
            log.acks.push(Ack { kind, user, value });
        }
    }
    Ok(log)
}

/// GET/POST with retries while the server sheds (503/429 with Retry-After).
async fn call(req: impl Fn() -> reqwest::RequestBuilder) -> anyhow::Result<(StatusCode, Value)> {
    for _ in 0..30 {
        let res = req()
            .send()
            .await
            .context("cannot reach the server to verify")?;
        let status = res.status();
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
            let wait = res
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                .unwrap_or(1)
                .min(5);
            tokio::time::sleep(Duration::from_secs(wait)).await;
            continue;
        }
        let body = res.json::<Value>().await.unwrap_or(Value::Null);
        return Ok((status, body));
    }
    anyhow::bail!("the server kept answering 503/429 while being verified")
}

/// The outcome of checking one log line.
struct Checked {
    kind: String,
    found: bool,
    why: Option<String>,
}

pub async fn run(args: &VerifyArgs) -> anyhow::Result<std::process::ExitCode> {
    let host = args.host.trim_end_matches('/').to_owned();
    let Log {
        acks,
        sessions,
        torn,
    } = read_log(&args.ack_log)?;
    anyhow::ensure!(
        !acks.is_empty(),
        "{} holds no acknowledged writes",
        args.ack_log.display()
    );
    let client = reqwest::Client::new();
    crate::step::server_metrics(&client, &host, 0).await?;
    eprintln!(
        "verify: {} acknowledged writes in {} ({} logouts sent and never answered){}",
        acks.len(),
        args.ack_log.display(),
        sessions
            .values()
            .filter(|(_, s)| *s == Session::EitherWay)
            .count(),
        if torn {
            " (a torn last line ignored)"
        } else {
            ""
        }
    );

    // Sign in as every user once: the account and its password must be there.
    let mut accounts: BTreeMap<i64, (String, String)> = BTreeMap::new();
    for a in &acks {
        if let (Some(name), Some(pw)) = (a.value["username"].as_str(), a.value["password"].as_str())
        {
            accounts.insert(a.user, (name.to_owned(), pw.to_owned()));
        }
    }
    let signed_in: HashMap<i64, Result<String, String>> = stream::iter(accounts.iter())
        .map(|(&id, (name, pw))| {
            let client = &client;
            let host = &host;
            async move {
                let body = json!({"username": name, "password": pw});
                let result =
                    match call(|| client.post(format!("{host}/api/login")).json(&body)).await {
                        Ok((StatusCode::OK, v)) if v["userId"] == id => {
                            Ok(v["token"].as_str().unwrap_or_default().to_owned())
                        }
                        Ok((status, v)) => Err(format!("sign-in as {name}: {status} {v}")),
                        Err(e) => Err(format!("sign-in as {name}: {e:#}")),
                    };
                (id, result)
            }
        })
        .buffer_unordered(args.concurrency.clamp(1, 4))
        .collect()
        .await;

    // Each session token as its last line leaves it.
    let sessions_ok: HashMap<String, Result<(), String>> = stream::iter(sessions.iter())
        .map(|(token, &(user, last))| {
            let (client, host) = (&client, &host);
            async move {
                let res = call(|| client.get(format!("{host}/api/me")).bearer_auth(token)).await;
                let ok = match (res, last) {
                    (Ok((StatusCode::OK, v)), Session::Valid | Session::EitherWay)
                        if v["id"] == user =>
                    {
                        Ok(())
                    }
                    (Ok((StatusCode::UNAUTHORIZED, _)), Session::Revoked | Session::EitherWay) => {
                        Ok(())
                    }
                    (Ok((status, _)), Session::Valid | Session::EitherWay) => {
                        Err(format!("session of user {user}: {status}, not valid"))
                    }
                    (Ok((status, _)), Session::Revoked) => Err(format!(
                        "logged-out session of user {user}: {status}, not revoked"
                    )),
                    (Err(e), _) => Err(format!("{e:#}")),
                };
                (token.clone(), ok)
            }
        })
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;

    let checks = stream::iter(acks.iter())
        .map(|a| check_one(&client, &host, a, &signed_in, &sessions_ok))
        .buffer_unordered(args.concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
    let counters = check_counters(&client, &host, &acks, args.concurrency).await?;

    let mut table: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut problems = Vec::new();
    for c in checks {
        let row = table.entry(c.kind).or_default();
        row.0 += 1;
        if c.found {
            row.1 += 1;
        } else if let Some(why) = c.why {
            problems.push(why);
        }
    }
    println!(
        "{:<10} {:>13} {:>8} {:>8}",
        "write", "acknowledged", "found", "missing"
    );
    let (mut acked, mut found) = (0, 0);
    for (kind, (a, f)) in &table {
        println!("{kind:<10} {a:>13} {f:>8} {:>8}", a - f);
        acked += a;
        found += f;
    }
    println!(
        "{:<10} {acked:>13} {found:>8} {:>8}",
        "total",
        acked - found
    );
    println!(
        "counters: {} checked (like counts, follower counts, photo counts), {} below what was acknowledged",
        counters.0,
        counters.1.len()
    );
    problems.extend(counters.1);
    for p in problems.iter().take(20) {
        println!("MISSING: {p}");
    }
    println!("verify: {found} of {acked} acknowledged writes found");
    Ok(if problems.is_empty() && found == acked {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

async fn check_one(
    client: &reqwest::Client,
    host: &str,
    a: &Ack,
    signed_in: &HashMap<i64, Result<String, String>>,
    sessions: &HashMap<String, Result<(), String>>,
) -> Checked {
    let token = signed_in.get(&a.user).and_then(|r| r.as_ref().ok());
    let verdict: Result<(), String> = async {
        match a.kind.as_str() {
            "register" | "login" | "logout" => {
                if a.kind == "register" {
                    signed_in
                        .get(&a.user)
                        .ok_or("no sign-in attempted")?
                        .as_ref()
                        .map_err(|e| e.clone())?;
                }
                let t = a.value["token"].as_str().unwrap_or_default();
                sessions.get(t).ok_or("no session check")?.clone()
            }
            "upload" => {
                let id = a.value["photoId"].as_i64().unwrap_or_default();
                let (status, v) = call(|| client.get(format!("{host}/api/photos/{id}")))
                    .await
                    .map_err(|e| format!("{e:#}"))?;
                if status != StatusCode::OK || v["userId"] != a.user {
                    return Err(format!("photo {id} of user {}: {status}", a.user));
                }
                let url = v["url"].as_str().unwrap_or_default();
                let file = client
                    .get(format!("{host}{url}"))
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if file.status() != StatusCode::OK {
                    return Err(format!("photo {id}: its image {url} is {}", file.status()));
                }
                Ok(())
            }
            "like" | "follow" => {
                let token = token.ok_or_else(|| format!("user {} cannot sign in", a.user))?;
                let (path, field) = if a.kind == "like" {
                    (format!("/api/photos/{}", a.value["photoId"]), "likedByMe")
                } else {
                    (
                        format!("/api/users/{}", a.value["followee"]),
                        "followedByMe",
                    )
                };
                let (status, v) = call(|| client.get(format!("{host}{path}")).bearer_auth(token))
                    .await
                    .map_err(|e| format!("{e:#}"))?;
                if status == StatusCode::OK && v[field] == true {
                    Ok(())
                } else {
                    Err(format!(
                        "{} by user {} on {path}: {status}, {field} = {}",
                        a.kind, a.user, v[field]
                    ))
                }
            }
            other => Err(format!("unknown write kind {other:?}")),
        }
    }
    .await;
    Checked {
        kind: a.kind.clone(),
        found: verdict.is_ok(),
        why: verdict.err(),
    }
}

/// Each counter the log touches must be at least the number of distinct
/// acknowledged writes behind it (others' writes may add more).
async fn check_counters(
    client: &reqwest::Client,
    host: &str,
    acks: &[Ack],
    concurrency: usize,
) -> anyhow::Result<(usize, Vec<String>)> {
    let mut likers: HashMap<i64, HashSet<i64>> = HashMap::new();
    let mut followers: HashMap<i64, HashSet<i64>> = HashMap::new();
    let mut uploads: HashMap<i64, usize> = HashMap::new();
    for a in acks {
        match a.kind.as_str() {
            "like" => {
                let photo = a.value["photoId"].as_i64().unwrap_or_default();
                likers.entry(photo).or_default().insert(a.user);
            }
            "follow" => {
                let followee = a.value["followee"].as_i64().unwrap_or_default();
                followers.entry(followee).or_default().insert(a.user);
            }
            "upload" => *uploads.entry(a.user).or_default() += 1,
            _ => {}
        }
    }
    let mut wanted: Vec<(String, &'static str, usize)> = Vec::new();
    for (photo, who) in &likers {
        wanted.push((format!("/api/photos/{photo}"), "likeCount", who.len()));
    }
    let mut users: HashMap<i64, (usize, usize)> = HashMap::new();
    for (user, who) in &followers {
        users.entry(*user).or_default().0 = who.len();
    }
    for (user, n) in &uploads {
        users.entry(*user).or_default().1 = *n;
    }
    for (user, (f, p)) in &users {
        wanted.push((format!("/api/users/{user}"), "followers", *f));
        wanted.push((format!("/api/users/{user}"), "photos", *p));
    }
    let results: Vec<anyhow::Result<Option<String>>> = stream::iter(wanted.iter())
        .map(|(path, field, at_least)| async move {
            let (status, v) = call(|| client.get(format!("{host}{path}"))).await?;
            let n = v[*field].as_i64().unwrap_or(-1);
            Ok((status != StatusCode::OK || n < *at_least as i64).then(|| {
                format!("{path}: {field} = {n}, but {at_least} were acknowledged ({status})")
            }))
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut low = Vec::new();
    for r in results {
        if let Some(p) = r? {
            low.push(p);
        }
    }
    Ok((wanted.len(), low))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_of(lines: &[Value]) -> Log {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acks.jsonl");
        let text: String = lines.iter().map(|l| l.to_string() + "\n").collect();
        std::fs::write(&path, text).unwrap();
        read_log(&path).unwrap()
    }

    #[test]
    fn a_logout_sent_and_never_answered_leaves_the_session_either_way() {
        let log = log_of(&[
            json!({"write": "register", "userId": 7, "username": "a", "password": "p", "token": "t7"}),
            json!({"write": "login", "userId": 2, "username": "user2", "password": "p", "token": "t2"}),
            json!({"sent": "logout", "userId": 2, "token": "t2"}),
            json!({"write": "logout", "userId": 2, "token": "t2"}),
            json!({"sent": "logout", "userId": 7, "token": "t7"}),
        ]);
        assert_eq!(log.sessions["t7"], (7, Session::EitherWay));
        assert_eq!(log.sessions["t2"], (2, Session::Revoked));
        // Sent lines are not acknowledged writes.
        let kinds: Vec<&str> = log.acks.iter().map(|a| a.kind.as_str()).collect();
        assert_eq!(kinds, ["register", "login", "logout"]);
    }

    #[test]
    fn a_session_with_no_logout_sent_must_be_valid() {
        let log = log_of(&[json!({"write": "login", "userId": 3, "token": "t3"})]);
        assert_eq!(log.sessions["t3"], (3, Session::Valid));
    }
}
