//! `isolation = "process"`: the same library, Rust or C, runs in a child
//! `plughost __child` process. Events go to it in batches over a Unix socket
//! (see [`frame`]); its publishes and logs come back on the same socket and
//! are routed as they come, from its callbacks or its own threads, by a
//! pump thread acting for the instance's thread (see `pump`). Ticks,
//! HTTP requests and checks are request/answer pairs on the same socket; the
//! child's routes come with its `init` answer; a `call` from the child is
//! answered on the socket while the host waits on the child's callback.
//!
//! A monitor thread per child reaps it and tells the instance's thread at
//! once when it dies, busy or idle: it shuts the host's end of the socket
//! down, so a read waiting on the child returns even when a descendant of
//! the child still holds the other end. Events of a frame the child did not
//! acknowledge are counted as lost (dropped). Each child leads its own
//! process group, killed whole when the child ends: nothing a plugin forks
//! outlives it. Children die with the host: they ask the kernel for SIGKILL
//! when their parent exits, and leave when the socket closes.
//!
//! Stopping takes two frames, as a thread instance's `stop` and drop are two
//! steps: `Stop` runs the plugin's `stop` and the child goes on serving
//! batches (at the host's shutdown, other instances' stops may publish to
//! it); `Exit`, sent when the host drops the instance, drops it in the child
//! (a C plugin's `destroy`) and ends the child, which the host reaps.
//!
//! Limits ([`frame::Limits`], from `[host] max_event_bytes`) hold on both
//! sides: what a plugin may not send is refused at its call, with the reason
//! in its error and in the host's log, never by a frame the other end drops.

mod child;
pub(crate) mod frame;
mod instance;
mod kill;
mod pump;
mod spawn;

pub use child::child_main;
pub(crate) use instance::ChildPid;
pub(crate) use kill::kill_group;
pub(crate) use spawn::{child_executable, spawn};
