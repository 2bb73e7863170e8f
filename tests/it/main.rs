//! The one integration-test binary: the `retain` command run as a user runs it, against
//! the shipped sample world, local folders and emulated object stores on 127.0.0.1.

mod util;

mod architecture;
mod cli;
mod emulators;
mod faults;
mod features;
mod grace;
mod interventions;
mod models;
mod monitor;
mod pipeline;
mod ray;
mod readout;
mod shards;
mod storage;
