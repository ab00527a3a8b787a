//! nacos-reconciler: takes Nacos instances offline when the Kubernetes pod or node behind them is gone.

pub mod model;
pub mod nacos;
