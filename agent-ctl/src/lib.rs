//! Client side of the kata-agent API.
