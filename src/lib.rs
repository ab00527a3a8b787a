//! nacos-reconciler: takes Nacos instances offline when the Kubernetes pod or node behind them is gone.

pub mod cluster;
pub mod controller;
pub mod crd;
pub mod leader;
pub mod metrics;
pub mod model;
pub mod nacos;
pub mod plan;
pub mod server;
pub mod time;
