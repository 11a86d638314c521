//! One run of one variant (one repeat of it): its hosts, fresh storage
//! seeded with its dataset, its servers, the warm-up and the measured
//! steps, its result file — everything it started is stopped and removed
//! when the run ends. An interrupted lab run resumed with `--resume`
//! reads the runs it already finished back from their files instead.

use anyhow::Context;
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::PathBuf;

use super::catalogue::{Dataset, Experiment, Method, Variant};
use super::setup::{Storage, binary, seed_flags, start_server};
use super::{LabArgs, Model, Outcome, fixed_rate};
use crate::fleet::Fleet;
use crate::step::Step;
use crate::topology::Topology;
use crate::{Common, Record, verdict};

/// One repeat of one variant, and where its result file goes.
pub(super) struct Run<'a> {
    pub(super) exp: &'a Experiment,
    pub(super) variant: &'a Variant,
    /// The variant's place in the experiment (0: the baseline).
    pub(super) index: usize,
    /// The round of the interleaved order (1-based).
    pub(super) repeat: usize,
    /// "[4/9] stage-2 (repeat 2 of 3)", for the console.
    pub(super) tag: String,
    pub(super) file: PathBuf,
}

/// What `read_back` needs of a result file.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Finished {
    commit: String,
    steps: Vec<Step>,
    breaking_point: Option<Value>,
    topology: Option<Value>,
}

impl Run<'_> {
    /// Runs the variant once on fresh hosts, storage and servers, and
    /// writes its result file.
    pub(super) async fn measure(
        &self,
        args: &LabArgs,
        topology: Option<&Topology>,
    ) -> anyhow::Result<Outcome> {
        let (exp, variant, index, tag) = (self.exp, self.variant, self.index, &self.tag);
        let rtt_ms = variant.rtt_ms.or(topology.and_then(|t| t.rtt_ms));
        let fleet = match topology {
            Some(t) => {
                let f = Fleet::start(t, variant.shape(), rtt_ms)?;
                eprintln!(
                    "lab {} {tag}: hosts: {}",
                    exp.name,
                    f.record["text"].as_str().unwrap_or("")
                );
                Some(f)
            }
            None => None,
        };
        let storage = Storage::new(
            variant.stage,
            args,
            variant.label.replace('-', "_").as_str(),
            fleet.as_ref().and_then(Fleet::direct),
        )?;
        let bin = binary(variant.stage.bin())?;
        let ds = Dataset::of(args, variant.scale, variant.mix.unwrap_or(exp.mix));
        eprintln!(
            "lab {} {tag}: seeding {} users, {} photos into fresh {} storage",
            exp.name,
            ds.users,
            ds.photos,
            variant.stage.bin()
        );
        // Awaited, and killed if the run is interrupted meanwhile: seeding
        // takes minutes on small hosts, and Ctrl-C must not wait for it.
        let seed = tokio::process::Command::new(&bin)
            .kill_on_drop(true)
            .arg("seed")
            .args(storage.flags())
            .args(seed_flags(variant.flags))
            .args(["--users", &ds.users.to_string()])
            .args(["--photos", &ds.photos.to_string()])
            .args(["--follows-per-user", &ds.follows_per_user.to_string()])
            .args(["--likes", &ds.likes.to_string()])
            .args(["--celebrity-percent", &ds.celebrity_percent.to_string()])
            .output()
            .await
            .with_context(|| format!("cannot run {} seed", bin.display()))?;
        anyhow::ensure!(
            seed.status.success(),
            "{} seed failed: {}",
            bin.display(),
            String::from_utf8_lossy(&seed.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
        if let Some(f) = &fleet {
            f.replicas_caught_up(std::time::Duration::from_secs(600))
                .await?;
        }
        let mut servers = Vec::new();
        let via = fleet.as_ref().and_then(Fleet::for_app);
        for p in 0..variant.processes {
            let mut serve = vec!["--listen".to_owned(), "127.0.0.1:0".to_owned()];
            serve.extend(storage.flags_via(via.as_ref()));
            serve.extend(variant.flags.iter().map(|f| f.to_string()));
            let log = storage.dir.path().join(format!("server-{p}.log"));
            servers.push(start_server(&bin, &serve, &log)?);
        }
        let hosts: Vec<String> = servers.iter().map(|s| s.addr.clone()).collect();
        eprintln!(
            "lab {} {tag}: {} {} on {}",
            exp.name,
            variant.stage.bin(),
            variant.flags.join(" "),
            hosts.join(", ")
        );
        let common = Common {
            hosts: hosts.clone(),
            json_out: None,
            users: args.users,
            arrival_rate: (args.model == Model::Open).then_some(args.arrival_rate),
            max_visits: args.max_visits,
            people: args.people,
            newcomer_share: None,
            signed_out_share: None,
            logout_share: None,
            duration: args.step_secs,
            seeded_users: ds.users,
            think_ms: args.think_ms.clone(),
            slo: args.slo.clone(),
            mix: variant.mix.unwrap_or(exp.mix),
            ack_log: None,
            // The lab places the generator itself (its topology's host).
            generator_cpus: None,
        };
        let (slo, journeys, servers_meta) = crate::prepare(&common, false).await?;
        // Into their hosts only now: signing the people in (not measured)
        // would take minutes of password hashing on a small budget.
        if let Some(f) = &fleet {
            for (server, host) in servers.iter().zip(&f.apps) {
                host.place(server.child.id())?;
            }
        }
        let load_json = crate::load_model(&common, &journeys);
        let stage = servers_meta[0]["stage"]
            .as_str()
            .unwrap_or("unknown")
            .to_owned();
        let out = self.file.clone();
        let report = out.with_extension("html");
        let cpu_hosts = fleet.as_ref().map_or(&[][..], |f| f.hosts.all());
        let plan = crate::step::planner(&hosts, journeys, &report, false, cpu_hosts);
        // The load is generated inside the generator's host, if any.
        let inside = match &fleet {
            Some(f) => Some(f.hosts.enter(&f.generator)?),
            None => None,
        };
        if args.warmup_secs > 0 {
            let level = match (exp.method, args.model) {
                (Method::Fixed, Model::Open) => fixed_rate(args, exp),
                (Method::Fixed, Model::Closed) => args.fixed_users as f64,
                (Method::Breaking, _) => common.start_level(),
            };
            // Measured like a step, then dropped: nothing of it is kept.
            verdict::measure(&plan, common.load(level), args.warmup_secs, "warm-up").await?;
        }
        let (steps, bp) = match exp.method {
            Method::Breaking => {
                let max = match args.model {
                    Model::Open => args.max_arrival_rate,
                    Model::Closed => args.max_users as f64,
                };
                verdict::breaking(
                    &plan,
                    &|level| common.load(level),
                    common.start_level(),
                    max,
                    verdict::Steps {
                        ladder_secs: args.step_secs,
                        bisect_secs: args.bisect_secs,
                        bisect: args.bisect,
                    },
                    &slo,
                )
                .await?
            }
            Method::Fixed => {
                let level = match args.model {
                    Model::Open => fixed_rate(args, exp),
                    Model::Closed => args.fixed_users as f64,
                };
                let step =
                    verdict::measure(&plan, common.load(level), args.step_secs, "fixed load")
                        .await?;
                (vec![step], None)
            }
        };
        drop(inside);
        let mut result = crate::result_json(&Record {
            mode: exp.method.mode(),
            mix: variant.mix.unwrap_or(exp.mix),
            stage: &stage,
            hosts: &hosts,
            slo: &slo,
            dataset: ds.json(),
            steps: &steps,
            breaking_point: &bp,
            summary: &json!({"processes": variant.processes, "flags": variant.flags}),
            report: &report,
            experiment: Some(json!({
                "name": exp.name,
                "variant": variant.label,
                "change": if index == 0 { Value::Null } else { json!(exp.change) },
                "repeat": self.repeat,
            })),
            load: load_json,
        });
        let topology_record = fleet.as_ref().map(|f| f.record.clone());
        result["topology"] = topology_record.clone().into();
        crate::write_result(&out, &result)?;
        crate::print_table(&steps);
        drop(plan);
        drop(servers);
        drop(storage);
        drop(fleet);
        Ok(Outcome {
            variant: variant.clone(),
            index,
            repeat: self.repeat,
            dataset: ds,
            file: out,
            steps,
            breaking_point: bp,
            topology: topology_record,
        })
    }

    /// The outcome of a run an interrupted lab run already finished, from
    /// its result file. Refused if another build measured it: a resumed
    /// report must not mix figures of two versions of the code.
    pub(super) fn read_back(&self, args: &LabArgs) -> anyhow::Result<Outcome> {
        let text = std::fs::read_to_string(&self.file)
            .with_context(|| format!("cannot read {}", self.file.display()))?;
        let done: Finished = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a lab result file", self.file.display()))?;
        let build = env!("MINIGRAM_BUILD_COMMIT");
        anyhow::ensure!(
            done.commit == build,
            "{} was measured at commit {}, this build is {build}: start a new run instead of resuming",
            self.file.display(),
            done.commit
        );
        Ok(Outcome {
            variant: self.variant.clone(),
            index: self.index,
            repeat: self.repeat,
            dataset: Dataset::of(
                args,
                self.variant.scale,
                self.variant.mix.unwrap_or(self.exp.mix),
            ),
            file: self.file.clone(),
            steps: done.steps,
            breaking_point: done.breaking_point.filter(|b| !b.is_null()),
            topology: done.topology.filter(|t| !t.is_null()),
        })
    }
}
