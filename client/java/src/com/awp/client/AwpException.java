package com.awp.client;

/** A failure of the client, with the C ABI's code (awp_client.h). */
public final class AwpException extends Exception {
    /** An argument or a record is wrong: sending it again cannot help. */
    public static final int INVALID = -1;
    /** The disk is full: the record is not queued; what was queued is intact. */
    public static final int DISK_FULL = -2;
    /** The queue failed otherwise (an IO error). */
    public static final int QUEUE = -3;
    /** The client stopped for good (AUTH_FAILED, UNSUPPORTED_VERSION) or is closed. */
    public static final int STOPPED = -4;
    /** A bug in the library (a caught panic). */
    public static final int PANIC = -6;

    private static final long serialVersionUID = 1L;

    private final int code;

    public AwpException(int code, String message) {
        super(message);
        this.code = code;
    }

    /** One of the codes above. */
    public int code() {
        return code;
    }
}
