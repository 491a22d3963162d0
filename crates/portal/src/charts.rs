//! Server-rendered SVG charts (being written).
