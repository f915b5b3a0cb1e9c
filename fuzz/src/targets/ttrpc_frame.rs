//! A connection's bytes, read the way ttrpc's async server reads them
//! (ttrpc 0.9 asynchronous/connection.rs and server.rs): frames one after
//! another (`GenMessage::read_from`: the 10-byte header, the 4 MiB bound,
//! the body); a frame over the bound is answered and skipped, a short read
//! ends the connection. Each request frame goes the server's way: odd
//! stream id, message type, the `ttrpc.Request` envelope, the service and
//! method by name in the maps the generated `create_*` functions build,
//! and that method's generated handler, which decodes the payload as the
//! RPC's own message and calls the service: `checks::Checker` (the agent's
//! request checks) for grpc.AgentService, the agent's own HealthService
//! for grpc.Health.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use protobuf::Message as _;
use protocols::{agent_ttrpc, health_ttrpc};
use ttrpc::proto::{
    GenMessage, GenMessageError, Message, Request, MESSAGE_LENGTH_MAX, MESSAGE_TYPE_REQUEST,
};
use ttrpc::r#async::{Service, TtrpcContext};

use super::checks::Checker;

/// Frames read from one input at most (a connection of empty frames
/// would otherwise loop for as long as the input is).
const MAX_FRAMES: usize = 64;

fn services() -> &'static HashMap<String, Service> {
    static SERVICES: OnceLock<HashMap<String, Service>> = OnceLock::new();
    SERVICES.get_or_init(|| {
        let mut all = agent_ttrpc::create_agent_service(Arc::new(Checker));
        all.extend(health_ttrpc::create_health(Arc::new(
            kata_agent::rpc::health::HealthService,
        )));
        all
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a current-thread tokio runtime")
    })
}

pub fn run(data: &[u8]) {
    runtime().block_on(connection(data));
}

async fn connection(mut data: &[u8]) {
    for _ in 0..MAX_FRAMES {
        match GenMessage::read_from(&mut data).await {
            Ok(msg) => {
                assert!(msg.payload.len() <= MESSAGE_LENGTH_MAX);
                frame(msg).await;
            }
            // The server answers it (INVALID_ARGUMENT) and reads on.
            Err(GenMessageError::ReturnError(header, _)) => {
                assert!(header.length as usize > MESSAGE_LENGTH_MAX, "{header:?}");
            }
            // The connection is gone.
            Err(GenMessageError::InternalError(_)) => return,
        }
    }
}

async fn frame(msg: GenMessage) {
    // The server refuses even stream ids and ignores unknown types; data
    // frames only go to streams, which the agent's services have none of.
    if msg.header.stream_id % 2 != 1 || msg.header.type_ != MESSAGE_TYPE_REQUEST {
        return;
    }
    let Ok(req) = Message::<Request>::try_from(msg) else {
        return;
    };
    let Some(service) = services().get(&req.payload.service) else {
        return;
    };
    let Some(method) = service.methods.get(&req.payload.method) else {
        return;
    };
    let ctx = TtrpcContext {
        mh: req.header,
        metadata: ttrpc::context::from_pb(&req.payload.metadata),
        timeout_nano: req.payload.timeout_nano,
    };
    // A decode failure of the payload comes back as Err (the server turns
    // it into a status); an answer must encode, as the server sends it.
    if let Ok(resp) = method.handler(ctx, req.payload).await {
        resp.write_to_bytes()
            .expect("a response that cannot be encoded");
    }
}
