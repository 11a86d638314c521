//! The names the journeys give their requests: the keys of a step's
//! `requests` table, which the verdicts, the SLO's classes, the lab's
//! curves and the round-trip report read. One list, so a renamed request
//! cannot leave a reader looking for the old name.

pub const REGISTER: &str = "POST /api/register";
pub const LOGIN: &str = "POST /api/login";
pub const LOGOUT: &str = "POST /api/logout";
pub const FOLLOW: &str = "POST /api/users/{id}/follow";
pub const FEED: &str = "GET /api/feed";
/// A feed page past the first (`?before=`): served apart from the first.
pub const FEED_OLDER: &str = "GET /api/feed?before";
pub const LIKE: &str = "POST /api/photos/{id}/like";
pub const UPLOAD: &str = "POST /api/photos";
pub const EXPLORE: &str = "GET /api/explore";
pub const PROFILE: &str = "GET /api/users/{id}";
pub const PHOTO: &str = "GET /api/photos/{id}";

/// Every request the journeys make; a smoke run must see each of them.
pub const ALL: &[&str] = &[
    REGISTER, LOGIN, LOGOUT, FOLLOW, FEED, FEED_OLDER, LIKE, UPLOAD, EXPLORE, PROFILE, PHOTO,
];
