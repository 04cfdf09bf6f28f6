//! Demo support for `benchmark`: the printed tables.
