//! The agents' status, for `supervisor workers --nats`: each agent puts a JSON entry
//! in the key-value bucket `sv_agents` every [`EVERY`]; the bucket keeps an entry for
//! [`TTL`], so a dead agent drops out of the list by then.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::agent::AgentStop;
use super::connect::{cluster, runtime, Connect};
use super::stream::AGENTS;
use crate::error::Error;

/// How often an agent says it is alive.
pub const EVERY: Duration = Duration::from_secs(2);
/// How long an agent that said nothing stays listed.
pub const TTL: Duration = Duration::from_secs(10);

/// One live agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// The host it runs on (or the name it was given).
    pub host: String,
    /// Its pid there.
    pub pid: u32,
    /// Its local pool's workers.
    pub procs: usize,
    /// Workers running a task now.
    pub busy: usize,
    /// Tasks it finished well.
    pub done: u64,
    /// Tasks that failed on it.
    pub failed: u64,
    /// Runs it serves now (their submitters answer; a run's tasks it may run).
    #[serde(default)]
    pub runs: usize,
}

pub(crate) struct Source {
    pub js: jetstream::Context,
    pub host: String,
    pub procs: usize,
    /// Busy workers, tasks done, tasks failed, runs served.
    pub read: Box<dyn Fn() -> (usize, u64, u64, usize) + Send + Sync>,
    pub stop: AgentStop,
}

async fn bucket(js: &jetstream::Context) -> Result<kv::Store, Error> {
    if let Ok(store) = js.get_key_value(AGENTS).await {
        return Ok(store);
    }
    js.create_key_value(kv::Config {
        bucket: AGENTS.to_string(),
        max_age: TTL,
        history: 1,
        ..Default::default()
    })
    .await
    .map_err(|e| cluster(format!("cannot create the bucket {AGENTS}"), e))
}

pub(crate) async fn publish(source: Source) {
    let pid = std::process::id();
    let key = format!(
        "{}-{pid}",
        source.host.replace(
            |c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_',
            "_"
        )
    );
    let mut store = None;
    loop {
        if store.is_none() {
            store = bucket(&source.js).await.ok();
        }
        if let Some(s) = &store {
            let (busy, done, failed, runs) = (source.read)();
            let status = AgentStatus {
                host: source.host.clone(),
                pid,
                procs: source.procs,
                busy,
                done,
                failed,
                runs,
            };
            if let Ok(json) = serde_json::to_vec(&status) {
                let _ = s.put(&key, json.into()).await;
            }
        }
        if source.stop.stopped() {
            if let Some(s) = &store {
                let _ = s.delete(&key).await;
            }
            return;
        }
        tokio::time::sleep(EVERY).await;
    }
}

/// The live agents of the server `connect` names, by host and pid.
pub fn agents(connect: &Connect) -> Result<Vec<AgentStatus>, Error> {
    let rt = runtime()?;
    rt.block_on(async {
        let client = connect.client("supervisor workers").await?;
        let js = jetstream::new(client);
        let store = bucket(&js).await?;
        let mut keys = store
            .keys()
            .await
            .map_err(|e| cluster(format!("cannot list the bucket {AGENTS}"), e))?;
        let mut all = Vec::new();
        while let Some(Ok(key)) = keys.next().await {
            if let Ok(Some(value)) = store.get(&key).await {
                if let Ok(status) = serde_json::from_slice::<AgentStatus>(&value) {
                    all.push(status);
                }
            }
        }
        all.sort_by(|a, b| (&a.host, a.pid).cmp(&(&b.host, b.pid)));
        Ok(all)
    })
}
