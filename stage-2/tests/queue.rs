//! Background photo processing (`--photo-processing queue`): an upload is
//! acknowledged with 202 before it is processed, becomes visible only when
//! a worker has made it ready, a damaged image ends `failed` and never
//! shows, and a job lost with Redis is found again by the sweep.

mod common;

use contract::load::Process;
use contract::{Backend, photo_form, png};
use minigram::domain::{Caption, UserId};
use minigram::store::{NewPhoto, PhotoStatus, Store};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_stage-2");

fn start_queued(config: &stage_2::Stage2Config, data_dir: &Path) -> Process {
    let mut flags = common::storage_flags(config, data_dir);
    flags.extend(["--photo-processing".into(), "queue".into()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Process::on_free_port(Path::new(BIN), &flags)
}

async fn get(client: &reqwest::Client, url: String, token: &str) -> Value {
    client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Polls photo `id` until its status is no longer `processing`.
async fn settled(client: &reqwest::Client, base: &str, token: &str, id: i64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let p = get(client, format!("{base}/api/photos/{id}"), token).await;
        if p["status"] != "processing" {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "photo {id} still processing: {p}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_queued_upload_is_acknowledged_then_processed_then_visible() {
    let (config, name) = common::fresh_config();
    let db = common::Pg::with_config(config.clone(), name).await;
    let data = db.uploads_dir().parent().unwrap().to_owned();
    let server = start_queued(&config, &data);
    let base = &server.url;
    let client = reqwest::Client::new();
    let queuer = contract::register_at(&client, base, "queuer").await;
    let (token, me) = (queuer.token, queuer.id);

    // A camera-sized picture: the worker downscales it to 1080 px.
    let res = client
        .post(format!("{base}/api/photos"))
        .bearer_auth(&token)
        .multipart(photo_form(png(1600, 1200), "big.png", "queued"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202, "queued, not processed in the request");
    let photo: Value = res.json().await.unwrap();
    assert_eq!(photo["status"], "processing");
    assert_eq!(photo["width"], 0);
    let id = photo["id"].as_i64().unwrap();
    let url = photo["url"].as_str().unwrap().to_owned();

    let done = settled(&client, base, &token, id).await;
    assert_eq!(done["status"], "ready", "{done}");
    assert_eq!(
        (done["width"].clone(), done["height"].clone()),
        (json!(1080), json!(810))
    );
    assert_eq!(done["url"], url, "the name was fixed at upload");
    let image = client.get(format!("{base}{url}")).send().await.unwrap();
    assert_eq!(image.status(), 200);
    let bytes = image.bytes().await.unwrap();
    assert!(bytes.starts_with(&[0xFF, 0xD8]), "a JPEG");
    let feed = get(&client, format!("{base}/api/feed"), &token).await;
    assert_eq!(
        feed["photos"][0]["id"], id,
        "visible in the owner's feed once ready"
    );
    let profile = get(&client, format!("{base}/api/users/{me}"), &token).await;
    assert_eq!(profile["photos"], 1);
    assert!(
        !data
            .join("uploads/incoming")
            .read_dir()
            .unwrap()
            .any(|_| true),
        "the raw upload is removed once processed"
    );

    // A PNG whose header is fine but whose pixels are cut off: accepted
    // (the request only reads the header), then failed, never shown.
    let mut damaged = png(300, 200);
    damaged.truncate(damaged.len() / 2);
    let res = client
        .post(format!("{base}/api/photos"))
        .bearer_auth(&token)
        .multipart(photo_form(damaged, "cut.png", "damaged"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let bad_id = res.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let bad = settled(&client, base, &token, bad_id).await;
    assert_eq!(bad["status"], "failed", "{bad}");
    let feed = get(&client, format!("{base}/api/feed"), &token).await;
    assert!(
        feed["photos"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["id"] != bad_id),
        "a failed photo never shows: {feed}"
    );
    let profile = get(&client, format!("{base}/api/users/{me}"), &token).await;
    assert_eq!(profile["photos"], 1, "only ready photos count");

    // Not an image at all: refused in the request, nothing stored.
    let before = db.count("photos").await;
    let res = client
        .post(format!("{base}/api/photos"))
        .bearer_auth(&token)
        .multipart(photo_form(b"not an image".to_vec(), "x.png", "junk"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415);
    assert_eq!(db.count("photos").await, before);
}

/// Redis runs without persistence: a job can be lost with it. The photo's
/// row and raw bytes are committed before the 202, so the sweep finds the
/// photo and a worker processes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_job_is_found_by_the_sweep() {
    let (mut config, name) = common::fresh_config();
    config.photo_queue = true;
    let db = common::Pg::with_config(config, name).await;
    let store = db.store();
    let uploads = db.uploads_dir();
    let user = store
        .create_user(minigram::store::NewUser {
            username: minigram::domain::Username::parse("lost").unwrap(),
            email: None,
            password_hash: "x".into(),
        })
        .await
        .unwrap();
    // What an upload leaves behind if Redis dies before the LPUSH.
    let raw = png(64, 48);
    let (raw_name, final_name) = minigram::images::queued_names(&raw);
    let incoming = minigram::images::incoming_dir(&uploads);
    std::fs::create_dir_all(&incoming).unwrap();
    minigram::images::write_durably(&incoming, &raw_name, &raw).unwrap();
    let photo = store
        .insert_photo(NewPhoto {
            user_id: UserId(user.0),
            caption: Caption::parse("lost").unwrap(),
            file_name: final_name.clone(),
            width: 0,
            height: 0,
            status: PhotoStatus::Processing,
        })
        .await
        .unwrap();
    // Older than the sweep's threshold.
    sqlx::query("UPDATE photos SET created_at = created_at - 60000 WHERE id = $1")
        .bind(photo.id.0)
        .execute(store.pg())
        .await
        .unwrap();
    let images = minigram::image_pool::ImagePool::new(1, 4).unwrap();
    stage_2::worker::start(store.clone(), uploads.clone(), images);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let p = store.photo(None, photo.id).await.unwrap().unwrap();
        if p.status == PhotoStatus::Ready {
            assert_eq!((p.width, p.height), (64, 48));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sweep did not re-queue the lost photo"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(uploads.join(&final_name).exists());
}
