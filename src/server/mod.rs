//! The event loop and the application API.

mod app_timers;
mod backplane_hook;
pub mod config;
pub(crate) mod connection;
pub(crate) mod core;
mod ctx;
mod deflate;
pub mod event_loop;
mod expiry;
pub mod fd_limit;
pub mod handle;
pub mod handler;
pub(crate) mod http;
mod mailbox;
pub mod metrics;
mod pacing;
mod publish;
pub mod router;
mod shutdown;
mod socket_queue;
pub(crate) mod static_files;
pub(crate) mod timer;
pub mod tls;
mod tls_loop;
pub mod transport;
pub mod write_buffer;
mod ws_read;

pub use config::{Config, ConfigError, SlowSubscriber};
pub use event_loop::Server;
pub use fd_limit::raise_fd_limit;
pub use handle::ServerHandle;
pub use handler::{ConnId, Ctx, Handler, Payload, Published, SendStatus, Upgrade, UpgradeRequest};
pub use router::{Routed, Router};
