//! `grpc.Health`: liveness and version.

use async_trait::async_trait;
use protocols::health::{health_check_response::ServingStatus, *};
use protocols::health_ttrpc;
use ttrpc::r#async::TtrpcContext;

use crate::version::AGENT_VERSION;

#[derive(Clone, Default)]
pub struct HealthService;

#[async_trait]
impl health_ttrpc::Health for HealthService {
    async fn check(
        &self,
        _ctx: &TtrpcContext,
        _req: CheckRequest,
    ) -> ttrpc::Result<HealthCheckResponse> {
        let mut resp = HealthCheckResponse::new();
        resp.status = ServingStatus::SERVING.into();
        Ok(resp)
    }

    async fn version(
        &self,
        _ctx: &TtrpcContext,
        _req: CheckRequest,
    ) -> ttrpc::Result<VersionCheckResponse> {
        let mut resp = VersionCheckResponse::new();
        resp.grpc_version = protocols::API_VERSION.to_string();
        resp.agent_version = AGENT_VERSION.to_string();
        Ok(resp)
    }
}
