//! Process I/O: stdin, stdout, stderr, tty resize. The process's stream is
//! taken out of the sandbox (an Arc) before any wait, so a blocked read
//! never holds the sandbox lock.

use protocols::agent::*;
use protocols::empty::Empty;

use super::AgentContext;
use crate::error::{Error, Invalid, Result};
use crate::limits;
use crate::process::ReadResult;

/// Kata's agent answers a read at end of stream with this error (INTERNAL);
/// the runtime's copy loop takes any read error as the end of the stream.
const EOF_MESSAGE: &str = "read meet eof";

async fn read(
    ctx: &AgentContext,
    req: ReadStreamRequest,
    stderr: bool,
) -> Result<ReadStreamResponse> {
    let len = limits::check("ReadStream len", req.len.into(), limits::MAX_READ_LEN)
        .map_err(Error::invalid)?;
    let (io, exit) = ctx
        .process_io_and_exit(&req.container_id, &req.exec_id)
        .await?;
    match io.read_until_exit(stderr, len, exit).await? {
        ReadResult::Data(data) => {
            let mut resp = ReadStreamResponse::new();
            resp.data = data;
            Ok(resp)
        }
        ReadResult::Eof => Err(Error::internal(EOF_MESSAGE)),
    }
}

pub async fn write_stdin(
    ctx: &AgentContext,
    req: WriteStreamRequest,
) -> Result<WriteStreamResponse> {
    let io = ctx.process_io(&req.container_id, &req.exec_id).await?;
    let n = io.write_stdin(&req.data).await?;
    let mut resp = WriteStreamResponse::new();
    resp.len = n as u32;
    Ok(resp)
}

pub async fn read_stdout(ctx: &AgentContext, req: ReadStreamRequest) -> Result<ReadStreamResponse> {
    read(ctx, req, false).await
}

pub async fn read_stderr(ctx: &AgentContext, req: ReadStreamRequest) -> Result<ReadStreamResponse> {
    read(ctx, req, true).await
}

pub async fn close_stdin(ctx: &AgentContext, req: CloseStdinRequest) -> Result<Empty> {
    let io = ctx.process_io(&req.container_id, &req.exec_id).await?;
    io.close_stdin().await;
    Ok(Empty::new())
}

pub async fn tty_win_resize(ctx: &AgentContext, req: TtyWinResizeRequest) -> Result<Empty> {
    let io = ctx.process_io(&req.container_id, &req.exec_id).await?;
    let rows = u16::try_from(req.row)
        .map_err(|_| Error::invalid(format!("row {} is too large", req.row)))?;
    let cols = u16::try_from(req.column)
        .map_err(|_| Error::invalid(format!("column {} is too large", req.column)))?;
    io.resize(rows, cols).invalid()?;
    Ok(Empty::new())
}
