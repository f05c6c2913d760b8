//! The worker's side of the admin console and of PAUSE/KILL: reading console
//! queries, handing them to `control`, writing the answers back, and holding
//! or closing this worker's connections when told to.

use std::sync::Arc;

use super::{ClientState, Worker};
use crate::control::{self, AdminRole};
use crate::pool::ConnRef;
use crate::protocol::{self, auth_code, frontend, sqlstate, Reader, Severity};

/// Console queries are short; anything longer is not one.
const MAX_ADMIN_QUERY: usize = 1 << 20;

impl Worker {
    /// Login to the console succeeded: a welcome of our own, no pool, no server.
    pub(super) fn admin_welcome(&mut self, cref: ConnRef) {
        let Some(c) = client_at!(self, cref) else {
            return;
        };
        self.scratch.clear();
        protocol::auth_request(&mut self.scratch, auth_code::OK, &[]);
        for (name, value) in [
            ("server_version", "15.0 (pooler)"),
            ("server_encoding", "UTF8"),
            ("client_encoding", "UTF8"),
            ("DateStyle", "ISO"),
            ("TimeZone", "UTC"),
            ("integer_datetimes", "on"),
            ("standard_conforming_strings", "on"),
        ] {
            protocol::parameter_status(&mut self.scratch, name, value);
        }
        protocol::backend_key_data(&mut self.scratch, 0, 0);
        protocol::ready_for_query(&mut self.scratch, b'I');
        c.outbuf.extend(&mut self.bufs, &self.scratch);
        c.state = ClientState::Admin;
        log::info!(
            "client {} {} from {} opened the admin console",
            c.id,
            c.user,
            c.peer
        );
        self.flush_client(cref);
        self.admin_input(cref);
    }

    pub(super) fn admin_input(&mut self, cref: ConnRef) {
        let Some(c) = client_at!(self, cref) else {
            return;
        };
        if c.state != ClientState::Admin {
            return;
        }
        let Some((tag, body)) = self.take_message(cref, MAX_ADMIN_QUERY, "admin console query")
        else {
            return;
        };
        let Some(c) = client_at!(self, cref) else {
            return;
        };
        match tag {
            frontend::QUERY => {
                let sql = Reader::new(&body).cstr().unwrap_or_default().to_owned();
                let role = c.admin.unwrap_or(AdminRole::Stats);
                c.state = ClientState::AdminBusy;
                control::run_query(Arc::clone(&self.shared), self.id, cref, sql, role);
            }
            frontend::TERMINATE => self.close_client(cref, "client terminated"),
            _ => self.fail_client(
                cref,
                Severity::Fatal,
                sqlstate::FEATURE_NOT_SUPPORTED,
                "the admin console speaks only the simple query protocol",
            ),
        }
    }

    pub(super) fn admin_reply(&mut self, cref: ConnRef, bytes: Vec<u8>) {
        let Some(c) = client_at!(self, cref) else {
            return;
        };
        if c.state != ClientState::AdminBusy {
            return;
        }
        c.outbuf.extend(&mut self.bufs, &bytes);
        c.state = ClientState::Admin;
        self.flush_client(cref);
        // The next query may have been pipelined behind this one.
        self.admin_input(cref);
        self.deferred_clients.push(cref);
    }

    /// RESUME: clients PAUSE held ask for a server again (and are held again
    /// if their database is still paused).
    pub(super) fn resume_held(&mut self) {
        for cref in std::mem::take(&mut self.held) {
            let waiting = client_at!(self, cref).is_some_and(|c| {
                c.server.is_none()
                    && matches!(c.state, ClientState::Waiting | ClientState::WaitingLogin)
            });
            if waiting {
                self.request_server(cref);
            }
        }
    }

    /// KILL db: its clients get an error and go, its servers close, now.
    pub(super) fn kill_database(&mut self, database: &str) {
        let clients: Vec<ConnRef> = self
            .clients
            .iter()
            .filter(|(_, c)| c.database == database)
            .map(|(index, c)| ConnRef {
                index,
                generation: c.generation,
            })
            .collect();
        for cref in clients {
            self.fail_client(
                cref,
                Severity::Fatal,
                sqlstate::ADMIN_SHUTDOWN,
                "connection killed by the admin console (KILL)",
            );
        }
        let servers: Vec<ConnRef> = self
            .servers
            .iter()
            .filter(|(_, s)| s.pool.key.database == database)
            .map(|(index, s)| ConnRef {
                index,
                generation: s.generation,
            })
            .collect();
        for sref in servers {
            self.close_server(sref, "killed by the admin console");
        }
    }
}
