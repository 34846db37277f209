//! The route stage's periodic task: files the quarantined documents that were only waiting
//! (for their patient's identity, or for an opposition to be lifted).

use std::time::Duration;

use dmpflow_route::RouteConfig;
use dmpflow_store::Store;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::chain;
use crate::metrics::metrics;

/// Cases re-routed per sweep at most: a flood of waiting cases is worked off over several
/// sweeps instead of in one long burst next to the live traffic.
const QUARANTINE_RETRY_BATCH: i64 = 200;

/// The route stage's sweeper: every `every`, the open `ins.unknown` cases whose patient the
/// registry knows by now, and the open `patient.opposed` cases whose patient no longer
/// opposes (a later ZFA-9 `INO`), are re-routed and, if they pass, stored
/// (`chain::release_case`, the code of `dmpflow quarantine release`). A document that ran
/// ahead of its patient's identity message on another feed, or that waited while its patient
/// opposed, is thus filed without anyone releasing it. Several route instances may sweep at
/// once: the store files a document once, and a case closes once.
pub async fn retry_waiting_quarantine(
    store: Store,
    cfg: RouteConfig,
    every: Duration,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let listed = async {
            let mut ids = store
                .quarantine_waiting_known(QUARANTINE_RETRY_BATCH)
                .await?;
            ids.extend(
                store
                    .quarantine_opposition_lifted(QUARANTINE_RETRY_BATCH)
                    .await?,
            );
            Ok::<_, dmpflow_store::StoreError>(ids)
        };
        let waiting = match listed.await {
            Ok(ids) => ids,
            Err(e) => {
                // The live stage retries and reports the database itself; try again later.
                warn!(stage = "route", error = %e, "quarantine retry: listing the waiting cases failed");
                continue;
            }
        };
        let mut filed = 0;
        for id in waiting {
            if shutdown.is_cancelled() {
                return;
            }
            let result = match chain::release_case(&store, &cfg, id).await {
                Ok(chain::Release::Filed(_) | chain::Release::PatientApplied) => "filed",
                Ok(chain::Release::StillFails { .. }) => "still_fails",
                Ok(chain::Release::NotFiled(_)) => "not_filed",
                Ok(chain::Release::NotOpen) => continue,
                Err(e) => {
                    warn!(stage = "route", case = id, error = %e, "quarantine retry failed");
                    break;
                }
            };
            metrics().quarantine_auto_release(result);
            if result == "filed" {
                filed += 1;
            }
        }
        if filed > 0 {
            info!(
                stage = "route",
                filed,
                "quarantine retry: waiting documents filed now that their patient is known or no longer opposes"
            );
        }
    }
}
