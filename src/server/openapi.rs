//! The OpenAPI 3 document served at `/api/v1/openapi.json`.
//!
//! Written in code next to the handlers rather than derived by a macro crate: every limit and
//! enum in it comes from the same constants the validation uses (`crate::request`), so the
//! document cannot drift from what the server accepts, and `tests/openapi.rs` checks that every
//! documented path answers on a live server.

use serde_json::{json, Value};

use crate::request::{
    DEFAULT_CFG_SCALE, DEFAULT_SAMPLER, DEFAULT_SIZE, DEFAULT_STEPS, MAX_BATCH_SIZE, MAX_CFG_SCALE, MAX_PROMPT_CHARS,
    MAX_SIZE, MAX_STEPS, MIN_SIZE, SAMPLER_NAMES, SCHEDULE_NAMES,
};

fn error_response(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
}

fn job_id_param() -> Value {
    json!({ "name": "id", "in": "path", "required": true, "schema": { "type": "string", "format": "uuid" } })
}

pub fn document() -> Value {
    let size = |name: &str| {
        json!({ "type": "integer", "minimum": MIN_SIZE, "maximum": MAX_SIZE, "multipleOf": 8, "default": DEFAULT_SIZE,
                "description": format!("{name} in pixels, a multiple of 8") })
    };
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Easel API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Local Stable Diffusion: submit generations, follow them over Server-Sent Events, fetch the images."
        },
        "paths": {
            "/api/v1/health": { "get": { "summary": "Liveness and readiness", "responses": {
                "200": { "description": "ready" }, "503": { "description": "ONNX Runtime or the models dir is not usable" } } } },
            "/api/v1/config": { "get": { "summary": "The effective settings", "responses": { "200": { "description": "settings" } } } },
            "/api/v1/samplers": { "get": { "summary": "Samplers and their schedules", "responses": { "200": { "description": "list" } } } },
            "/api/v1/models": { "get": { "summary": "Models in the models dir", "responses": { "200": { "description": "list" } } } },
            "/api/v1/openapi.json": { "get": { "summary": "This document", "responses": { "200": { "description": "OpenAPI 3" } } } },
            "/api/v1/generate": {
                "post": {
                    "summary": "Queue a text-to-image job",
                    "parameters": [{ "name": "Idempotency-Key", "in": "header", "required": false, "schema": { "type": "string", "maxLength": 200 },
                                     "description": "A retried submit with the same key returns the first job (200) instead of a new one" }],
                    "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/GenerateRequest" } } } },
                    "responses": {
                        "202": { "description": "queued", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Submitted" } } } },
                        "200": { "description": "an earlier job with the same Idempotency-Key" },
                        "400": error_response("the body is not JSON"),
                        "413": { "description": "the body is larger than 64 KiB" },
                        "415": error_response("the content type is not application/json"),
                        "422": error_response("invalid fields; `fields` names each one")
                    }
                },
                "get": {
                    "summary": "History, newest first",
                    "parameters": [
                        { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": super::api_jobs::MAX_PAGE, "default": 20 } },
                        { "name": "before", "in": "query", "schema": { "type": "integer" }, "description": "`next_before` of the previous page" }
                    ],
                    "responses": { "200": { "description": "a page of jobs" }, "422": error_response("bad limit or cursor") }
                }
            },
            "/api/v1/generate/{id}": {
                "get": { "summary": "One job", "parameters": [job_id_param()], "responses": {
                    "200": { "description": "the job", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Job" } } } },
                    "404": error_response("no such job") } },
                "delete": { "summary": "Cancel a queued job, or a running one within one step", "parameters": [job_id_param()], "responses": {
                    "200": { "description": "cancelled" }, "202": { "description": "running; stops within one step" },
                    "404": error_response("no such job"), "409": error_response("already finished") } }
            },
            "/api/v1/generate/{id}/events": { "get": {
                "summary": "Server-Sent Events: the current state first, then queued, started, progress, succeeded, failed or cancelled",
                "parameters": [job_id_param()],
                "responses": { "200": { "description": "text/event-stream" }, "404": error_response("no such job") } } },
            "/api/v1/images/{id}": { "delete": { "summary": "Delete an image (record and file)",
                "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": { "204": { "description": "deleted" }, "404": error_response("no such image") } } },
            "/outputs/{path}": { "get": { "summary": "An image file (cached for a year: names are never reused)",
                "parameters": [{ "name": "path", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": { "200": { "description": "image/png" }, "404": { "description": "no such file" } } } }
        },
        "components": { "schemas": {
            "GenerateRequest": {
                "type": "object", "required": ["prompt"], "additionalProperties": false,
                "properties": {
                    "prompt": { "type": "string", "maxLength": MAX_PROMPT_CHARS },
                    "negative_prompt": { "type": "string", "maxLength": MAX_PROMPT_CHARS },
                    "seed": { "type": "integer", "minimum": 0, "maximum": u64::MAX, "description": "random when absent; values above 2^53 need a client that keeps 64-bit integers" },
                    "steps": { "type": "integer", "minimum": 1, "maximum": MAX_STEPS, "default": DEFAULT_STEPS },
                    "cfg_scale": { "type": "number", "minimum": 0, "maximum": MAX_CFG_SCALE, "default": DEFAULT_CFG_SCALE },
                    "width": size("width"),
                    "height": size("height"),
                    "sampler": { "type": "string", "enum": SAMPLER_NAMES, "default": DEFAULT_SAMPLER },
                    "schedule": { "type": "string", "enum": SCHEDULE_NAMES, "description": "default: karras for dpmpp_2m, default otherwise" },
                    "batch_size": { "type": "integer", "minimum": 1, "maximum": MAX_BATCH_SIZE, "default": 1 },
                    "model": { "type": "string", "description": "a name from GET /api/v1/models" }
                }
            },
            "Submitted": { "type": "object", "properties": {
                "id": { "type": "string" }, "status": { "type": "string" }, "position": { "type": "integer", "nullable": true } } },
            "Job": { "type": "object", "properties": {
                "id": { "type": "string" },
                "status": { "type": "string", "enum": ["queued", "running", "succeeded", "failed", "cancelled"] },
                "position": { "type": "integer", "nullable": true },
                "progress": { "type": "object", "properties": { "step": { "type": "integer" }, "total": { "type": "integer" }, "eta_seconds": { "type": "number", "nullable": true } } },
                "request": { "type": "object", "description": "the settings the job runs with, every default filled in and the seed chosen" },
                "images": { "type": "array", "items": { "type": "object", "properties": {
                    "id": { "type": "string" }, "url": { "type": "string" }, "seed": { "type": "integer" },
                    "width": { "type": "integer" }, "height": { "type": "integer" }, "batch_index": { "type": "integer" } } } },
                "error": { "type": "string", "nullable": true }
            } },
            "Error": { "type": "object", "required": ["error"], "properties": {
                "error": { "type": "string" },
                "fields": { "type": "array", "items": { "type": "object", "properties": { "field": { "type": "string" }, "message": { "type": "string" } } } }
            } }
        } }
    })
}
