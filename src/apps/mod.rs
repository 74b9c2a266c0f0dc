//! The applications `wsloop` runs: echo and chat broadcast.

pub mod chat;
pub mod echo;
