//! Renderings of result files shared by the tools that write them and the
//! `dashboard report` command that puts them into the docs.

use serde_json::Value;

/// `0.42 ms` as `420 µs`, `3.1` as `3.10 ms`.
pub fn duration_ms(ms: f64) -> String {
    if ms < 1.0 {
        format!("{:.0} µs", ms * 1000.0)
    } else {
        format!("{ms:.2} ms")
    }
}

/// The Markdown table of a `minigram.storagebench/1` result:
/// `operation | mean | target | status`.
pub fn storage_table(result: &Value) -> String {
    let mut t = String::from("| operation | mean | target | status |\n|---|---:|---:|---|\n");
    for r in result["operations"].as_array().into_iter().flatten() {
        let mean = r["meanMs"].as_f64().unwrap_or(f64::NAN);
        let target = r["targetMs"].as_f64().unwrap_or(f64::NAN);
        let status = if r["met"].as_bool() == Some(true) {
            "met"
        } else {
            "**missed**"
        };
        t.push_str(&format!(
            "| {} | {} | ≤ {} | {status} ({:.2} × target) |\n",
            r["operation"].as_str().unwrap_or(""),
            duration_ms(mean),
            duration_ms(target),
            mean / target
        ));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_table_marks_met_and_missed() {
        let v = serde_json::json!({"operations": [
            {"operation": "like", "meanMs": 0.25, "targetMs": 5.0, "met": true},
            {"operation": "feed", "meanMs": 3.0, "targetMs": 2.0, "met": false},
        ]});
        let t = storage_table(&v);
        assert!(
            t.contains("| like | 250 µs | ≤ 5.00 ms | met (0.05 × target) |"),
            "{t}"
        );
        assert!(
            t.contains("| feed | 3.00 ms | ≤ 2.00 ms | **missed** (1.50 × target) |"),
            "{t}"
        );
    }
}
