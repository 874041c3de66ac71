package dev.headroom.server;

import com.google.gson.JsonNull;
import com.google.gson.JsonObject;

/**
 * A request the server refuses, with the HTTP status and OpenAI's error body:
 * {@code {"error": {"message", "type", "param", "code"}}}.
 */
final class ApiException extends RuntimeException {
    final int status;
    final String type, param, code;
    /** Seconds for {@code Retry-After} (503), or 0 for none. */
    final int retryAfter;

    ApiException(int status, String type, String message, String param, String code, int retryAfter) {
        super(message);
        this.status = status;
        this.type = type;
        this.param = param;
        this.code = code;
        this.retryAfter = retryAfter;
    }

    /** 400, invalid_request_error, about {@code param} (null: the request as a whole). */
    static ApiException invalid(String message, String param) {
        return new ApiException(400, "invalid_request_error", message, param, null, 0);
    }

    static ApiException notFound(String message, String param, String code) {
        return new ApiException(404, "invalid_request_error", message, param, code, 0);
    }

    JsonObject body() {
        JsonObject e = new JsonObject();
        e.addProperty("message", getMessage());
        e.addProperty("type", type);
        if (param == null) e.add("param", JsonNull.INSTANCE);
        else e.addProperty("param", param);
        if (code == null) e.add("code", JsonNull.INSTANCE);
        else e.addProperty("code", code);
        JsonObject root = new JsonObject();
        root.add("error", e);
        return root;
    }
}
