//! dockwright: a reconciling agent for Docker daemons.
//!
//! One data path (see DESIGN.md): [`source`] → [`desired`] → [`plan`] ← [`observed`] ←
//! [`docker`], then [`execute`] and [`report`]. The CLI in `main.rs` and every front end are
//! thin wrappers over [`converge`].

pub mod adoptions;
pub mod agent;
pub mod api;
pub mod build_context;
pub mod converge;
pub mod convert;
pub mod credentials;
pub mod desired;
pub mod docker;
pub mod duration;
pub mod error;
pub mod execute;
pub mod image_records;
pub mod kubernetes;
pub mod labels;
pub mod metrics;
pub mod observed;
pub mod plan;
pub mod policy;
pub mod prune;
pub mod quantity;
pub mod reference;
pub mod report;
pub mod secrets;
pub mod server;
pub mod source;
pub mod telemetry;
pub mod tls;
pub mod updates;

pub use error::{Error, Result};
