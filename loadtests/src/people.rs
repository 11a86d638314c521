//! The people who come back: seeded accounts whose sessions last across
//! visits, as a real social app's do (weeks, not one visit).
//!
//! A run starts with `--people` of them already signed in ("sessions from
//! earlier visits", made by [`sign_in_before`] before any step and not
//! measured). A visit checks a person out, uses their token, and checks
//! them back in; only some visits start signed out (a new device, an
//! expired session: `--signed-out-share`) and sign in again, and only some
//! end with a logout (`--logout-share`). Newcomers who register join the
//! pool and come back like everyone else.
//!
//! The pool lives here, not in Goose's per-user session data, because each
//! step of a run is its own Goose attack with new users: sessions must
//! outlive them. One person may be in two visits at once (two tabs); such a
//! visit never logs out, so the other tab's token stays good.

use anyhow::Context;
use futures_util::{StreamExt, stream};
use rand::Rng;
use serde_json::{Value, json};
use std::sync::Mutex;
use std::time::Duration;

use crate::acks;

/// One person who has visited before.
#[derive(Debug, Clone)]
pub struct Person {
    pub username: String,
    pub password: &'static str,
    pub user_id: i64,
    /// Empty when signed out (the next visit signs in).
    pub token: String,
    /// Visits using this person right now.
    busy: u32,
}

static POOL: Mutex<Vec<Person>> = Mutex::new(Vec::new());

fn pool() -> std::sync::MutexGuard<'static, Vec<Person>> {
    POOL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A person checked out for one visit.
#[derive(Debug, Clone)]
pub struct Visitor {
    pub index: usize,
    pub person: Person,
    /// The token the visit began with.
    began_with: String,
}

/// Checks out a random person (`None` if the pool is empty).
pub fn check_out() -> Option<Visitor> {
    let mut pool = pool();
    if pool.is_empty() {
        return None;
    }
    let index = rand::rng().random_range(0..pool.len());
    Some(take(&mut pool, index))
}

/// Checks out the person signed in as `username`, if the pool has them.
pub fn check_out_named(username: &str) -> Option<Visitor> {
    let mut pool = pool();
    let index = pool.iter().position(|p| p.username == username)?;
    Some(take(&mut pool, index))
}

fn take(pool: &mut [Person], index: usize) -> Visitor {
    pool[index].busy += 1;
    Visitor {
        index,
        person: pool[index].clone(),
        began_with: pool[index].token.clone(),
    }
}

/// Claims the logout of a visitor's session: true when this is the
/// person's only visit now (another tab would lose its session), and then
/// the pool forgets the token at once, so a visit that starts meanwhile
/// signs in instead of using a session about to be revoked.
pub fn may_log_out(v: &Visitor) -> bool {
    let mut pool = pool();
    match pool.get_mut(v.index) {
        Some(p) if p.busy <= 1 => {
            p.token.clear();
            true
        }
        _ => false,
    }
}

/// Checks a visitor back in with the session it ended with.
pub fn check_in(v: Visitor) {
    let mut pool = pool();
    if let Some(p) = pool.get_mut(v.index) {
        p.busy = p.busy.saturating_sub(1);
        // A sign-in or a logout in this visit changed the session; a
        // visit that changed nothing leaves what another tab may have set.
        if v.person.token != v.began_with {
            p.token = v.person.token;
        }
    }
}

/// A newcomer who registered joins the people who come back, checked out
/// to the visit that registered them until it ends (its own later steps
/// use the session: another visit must not log it out meanwhile).
pub fn join(username: String, password: &'static str, user_id: i64, token: String) -> Visitor {
    let person = Person {
        username,
        password,
        user_id,
        token,
        busy: 1,
    };
    let mut pool = pool();
    pool.push(person.clone());
    Visitor {
        index: pool.len() - 1,
        began_with: person.token.clone(),
        person,
    }
}

/// Signs `people` seeded accounts in (user1, user2, … spread over
/// `hosts`), four at a time, and makes them the pool: the sessions people
/// already have when the measured load begins. Each sign-in is an
/// acknowledged write for `--ack-log`.
pub async fn sign_in_before(hosts: &[String], people: usize) -> anyhow::Result<()> {
    pool().clear();
    if people == 0 {
        return Ok(());
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let signed: Vec<anyhow::Result<Person>> = stream::iter(0..people)
        .map(|k| {
            let client = client.clone();
            let host = hosts[k % hosts.len()].clone();
            async move { sign_in(&client, &host, &format!("user{}", k + 1)).await }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    let mut pool = pool();
    for p in signed {
        pool.push(p?);
    }
    Ok(())
}

async fn sign_in(client: &reqwest::Client, host: &str, username: &str) -> anyhow::Result<Person> {
    for _ in 0..20 {
        let r = client
            .post(format!("{host}/api/login"))
            .json(&json!({"username": username, "password": minigram::seed::SEED_PASSWORD}))
            .send()
            .await
            .with_context(|| format!("cannot sign in {username} at {host}"))?;
        // Hashing is saturated: the server says when to come back.
        if r.status().as_u16() == 503 || r.status().as_u16() == 429 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        anyhow::ensure!(
            r.status().is_success(),
            "signing in {username} at {host} answered {}: is the dataset seeded (--seeded-users)?",
            r.status()
        );
        let v: Value = r.json().await?;
        let person = Person {
            username: username.to_owned(),
            password: minigram::seed::SEED_PASSWORD,
            user_id: v["userId"].as_i64().unwrap_or_default(),
            token: v["token"].as_str().unwrap_or_default().to_owned(),
            busy: 0,
        };
        acks::record(json!({
            "write": "login",
            "userId": person.user_id,
            "username": person.username,
            "password": minigram::seed::SEED_PASSWORD,
            "token": person.token,
        }));
        return Ok(person);
    }
    anyhow::bail!(
        "{host} kept refusing to sign {username} in (503): it is overloaded before the load began"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A newcomer's own visit goes on using the session it registered
    /// with: a visit that checks the newcomer out meanwhile must not log
    /// it out (the race that made a smoke run's upload answer 401).
    #[test]
    fn a_newcomer_is_not_logged_out_while_its_visit_goes_on() {
        pool().clear();
        let newcomer = join("lt_new".into(), "pw", 7, "token-7".into());
        let other = check_out().expect("the newcomer is in the pool");
        assert_eq!(other.person.username, "lt_new");
        assert!(!may_log_out(&other), "the newcomer's visit is still on");
        check_in(newcomer);
        check_in(other);
        let later = check_out().expect("still in the pool");
        assert_eq!(later.person.token, "token-7", "nobody logged it out");
        assert!(may_log_out(&later), "its only visit now may log out");
        check_in(later);
    }
}
