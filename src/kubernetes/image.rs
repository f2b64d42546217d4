//! The reconcile of one `Image` object on this node: its pull (or build), tags and push, then
//! this node's status entry (image ID, digest, conditions, last error) and events. Images
//! have no placement (every node's agent reconciles every `Image`) and are never removed, so
//! there is no finalizer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::Resource;
use tracing::Instrument;

use super::controller::{
    key_of, lock, now, patch_status, requeue_after, work_left, Context, ImageObject,
};
use super::status::{self, Progress};
use super::Error;
use crate::agent::GroupVerdict;
use crate::api::NodeImageStatus;
use crate::desired::{Kind, ResourceKey};
use crate::observed::ObservedState;
use crate::plan;

/// Reconciles one `Image` object on this node.
pub async fn reconcile_image(obj: Arc<ImageObject>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = key_of(Kind::Image, &*obj)?;
    let span = tracing::info_span!("reconcile", resource = %key, node = %ctx.options.node_name);
    let started = Instant::now();
    let result = reconcile_image_inner(&obj, &key, &ctx)
        .instrument(span)
        .await;
    if let Some(m) = &ctx.metrics {
        m.observe_reconcile(started.elapsed(), result.is_ok());
    }
    ctx.first_pass.reconciled(&key);
    result
}

async fn reconcile_image_inner(
    obj: &ImageObject,
    key: &ResourceKey,
    ctx: &Context,
) -> Result<Action, Error> {
    let node = ctx.options.node_name.clone();
    let subject = status::Subject {
        node: &node,
        key,
        generation: obj.meta().generation,
    };
    let image = match &obj.0 {
        Ok(image) => image,
        Err(invalid) => {
            if obj.meta().deletion_timestamp.is_some() || !ctx.first_report_of_invalid(obj) {
                return Ok(Action::await_change());
            }
            let message = format!(
                "the object does not match the Image schema: {}",
                invalid.error
            );
            let entry = status::image_entry(
                subject,
                None,
                &ObservedState::default(),
                &Progress::Invalid(message.clone()),
                None,
                &now(),
            );
            write_status(ctx, key, &entry).await?;
            ctx.event(obj, EventType::Warning, "InvalidSpec", message)
                .await;
            // Retried when the object changes.
            return Ok(Action::await_change());
        }
    };
    if image.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let previous = status::previous_image_entry(image.status.as_ref(), &node).cloned();
    let desired = ctx.desired().await;
    let refused = desired
        .errors
        .get(key)
        .map(|m| (Progress::Invalid(m.clone()), "InvalidSpec", m))
        .or_else(|| {
            desired
                .held
                .get(key)
                .map(|m| (Progress::Failed("Held", m.clone()), "Held", m))
        });
    if let Some((progress, reason, message)) = refused {
        let entry = status::image_entry(
            subject,
            None,
            &ObservedState::default(),
            &progress,
            previous.as_ref(),
            &now(),
        );
        if previous.as_ref() != Some(&entry) {
            write_status(ctx, key, &entry).await?;
            ctx.event(image, EventType::Warning, reason, message.clone())
                .await;
        }
        return match progress {
            // Retried with back-off: the policy may change.
            Progress::Failed(..) => Err(Error::Held(message.clone())),
            // Retried when the object changes.
            _ => Ok(Action::await_change()),
        };
    }
    let Some(d) = desired.state.images.get(key) else {
        return Ok(Action::requeue(ctx.options.waiting_requeue));
    };
    let mut observed = ctx.observe(&desired.state).await?;
    let full = plan::plan(&desired.state, &observed, &ctx.plan_options());
    let mine = plan::restrict(&full, |k| k == key);
    let mut remaining = work_left(&full, key);
    let mut failure = None;
    if !mine.actions.is_empty() {
        let done = ctx.run(image, &mine, &ctx.runner()).await;
        failure = GroupVerdict::of(&mine, &done).failures.remove(key);
        observed = ctx.observe(&desired.state).await?;
        let full = plan::plan(&desired.state, &observed, &ctx.plan_options());
        remaining = work_left(&full, key);
    }
    let progress = match (&failure, &remaining) {
        (Some(e), _) => Progress::Failed("ActionFailed", e.message.clone()),
        (None, (_, Some(blocked))) => Progress::Waiting("Blocked", blocked.clone()),
        (None, (n, None)) if *n > 0 => Progress::Waiting("Converging", format!("{n} actions left")),
        _ => Progress::Converged,
    };
    let entry = status::image_entry(
        subject,
        Some(d),
        &observed,
        &progress,
        previous.as_ref(),
        &now(),
    );
    if previous.as_ref() != Some(&entry) {
        write_status(ctx, key, &entry).await?;
    }
    if let Some(error) = failure {
        return Err(Error::Actions(error));
    }
    lock(&ctx.backoffs).succeeded(key);
    let mut requeue = requeue_after(&ctx.options, &remaining);
    if let Some(update) = &d.update {
        // The registry is asked again once the interval is over (the tracker decides).
        requeue = requeue.min(update.interval + Duration::from_millis(100));
    }
    Ok(Action::requeue(requeue))
}

/// Server-side apply of this node's entry of an `Image`'s status.
async fn write_status(
    ctx: &Context,
    key: &ResourceKey,
    entry: &NodeImageStatus,
) -> Result<(), Error> {
    patch_status::<ImageObject>(ctx, key, &status::apply_patch("Image", entry)).await
}
