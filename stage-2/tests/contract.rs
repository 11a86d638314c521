//! Stage 2 against both contract suites (HTTP and storage): the same cases
//! stage 1 passes, each with its own Postgres database and Redis prefix.

mod common;

use common::Pg;

contract::contract_tests!(Pg);
