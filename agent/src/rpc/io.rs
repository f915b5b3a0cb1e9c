//! Process I/O: stdin, stdout, stderr, tty resize.

use protocols::agent::*;
#[allow(unused_imports)]
use protocols::empty::Empty;
#[allow(unused_imports)]
use protocols::{csi, types};

use super::status::unimplemented;
use super::AgentContext;

pub async fn write_stdin(
    _ctx: &AgentContext,
    _req: WriteStreamRequest,
) -> ttrpc::Result<WriteStreamResponse> {
    unimplemented("WriteStdin")
}

pub async fn read_stdout(
    _ctx: &AgentContext,
    _req: ReadStreamRequest,
) -> ttrpc::Result<ReadStreamResponse> {
    unimplemented("ReadStdout")
}

pub async fn read_stderr(
    _ctx: &AgentContext,
    _req: ReadStreamRequest,
) -> ttrpc::Result<ReadStreamResponse> {
    unimplemented("ReadStderr")
}

pub async fn close_stdin(_ctx: &AgentContext, _req: CloseStdinRequest) -> ttrpc::Result<Empty> {
    unimplemented("CloseStdin")
}

pub async fn tty_win_resize(
    _ctx: &AgentContext,
    _req: TtyWinResizeRequest,
) -> ttrpc::Result<Empty> {
    unimplemented("TtyWinResize")
}
