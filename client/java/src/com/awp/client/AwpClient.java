package com.awp.client;

import java.util.Map;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * The AWP/1 client for Android (and any JVM): records go to a crash-safe
 * queue on the device and the library's own thread sends them to the
 * gateway, resending until they are acknowledged. {@code push} returns once
 * the record is written to the OS and never waits on the network; it does
 * disk IO, so call it off the UI thread. {@code flush} blocks.
 *
 * <p>Thread-safe: any number of threads may push at once; {@code close}
 * waits for the calls running and makes later calls throw STOPPED.
 *
 * <p>The configuration is the JSON object of the C ABI (docs/client.md).
 */
public final class AwpClient implements AutoCloseable {
    static {
        String path = System.getProperty("awp.client.library");
        if (path != null) {
            System.load(path);
        } else {
            System.loadLibrary("awp_client");
        }
    }

    /** NET_USAGE networks. */
    public static final int NETWORK_UNKNOWN = 0, NETWORK_WIFI = 1, NETWORK_CELLULAR = 2, NETWORK_ETHERNET = 3,
            NETWORK_OTHER = 4;
    /** MESSAGE directions. */
    public static final int DIRECTION_IN = 0, DIRECTION_OUT = 1;
    /** MESSAGE channels. */
    public static final int CHANNEL_SMS = 0, CHANNEL_CALL = 1, CHANNEL_EMAIL = 2, CHANNEL_CHAT = 3, CHANNEL_OTHER = 4;

    private final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();
    private long handle;

    private AwpClient(long handle) {
        this.handle = handle;
    }

    /** Opens the queue and starts the engine; throws INVALID naming the bad key. */
    public static AwpClient open(String configJson) throws AwpException {
        return new AwpClient(nativeOpen(configJson));
    }

    /** A record in the test vectors' JSON shape with {@code time_ms}. */
    public void pushJson(String recordJson) throws AwpException {
        long h = enter();
        try {
            nativePushJson(h, recordJson);
        } finally {
            leave();
        }
    }

    /** LOCATION: latitude and longitude in 1e-7 degrees, accuracy in metres. */
    public void pushLocation(long timeMs, int latE7, int lonE7, long accuracyM) throws AwpException {
        long h = enter();
        try {
            nativePushLocation(h, timeMs, latE7, lonE7, accuracyM);
        } finally {
            leave();
        }
    }

    /** APP_USAGE: the app, its window title ("" for none), its foreground time. */
    public void pushAppUsage(long timeMs, String app, String title, long foregroundMs) throws AwpException {
        long h = enter();
        try {
            nativePushAppUsage(h, timeMs, app, title, foregroundMs);
        } finally {
            leave();
        }
    }

    /** NET_USAGE: the app ("" for the device), a NETWORK_ constant, bytes sent and received. */
    public void pushNetUsage(long timeMs, String app, int network, long bytesTx, long bytesRx) throws AwpException {
        long h = enter();
        try {
            nativePushNetUsage(h, timeMs, app, network, bytesTx, bytesRx);
        } finally {
            leave();
        }
    }

    /** MESSAGE: a DIRECTION_ and a CHANNEL_ constant, the peer, the size (seconds for calls). */
    public void pushMessage(long timeMs, int direction, int channel, String peer, long size) throws AwpException {
        long h = enter();
        try {
            nativePushMessage(h, timeMs, direction, channel, peer, size);
        } finally {
            leave();
        }
    }

    /**
     * EVENT: a name and attributes whose values are null, Boolean, Long,
     * Integer, Double, String or byte[].
     */
    public void pushEvent(long timeMs, String name, Map<String, ?> attributes) throws AwpException {
        int n = attributes == null ? 0 : attributes.size();
        String[] keys = new String[n];
        Object[] values = new Object[n];
        if (attributes != null) {
            int i = 0;
            for (Map.Entry<String, ?> e : attributes.entrySet()) {
                keys[i] = e.getKey();
                values[i] = e.getValue();
                i++;
            }
        }
        long h = enter();
        try {
            nativePushEvent(h, timeMs, name, keys, values);
        } finally {
            leave();
        }
    }

    /** A record of a kind this version of AWP/1 does not know (≥ 6), as its body bytes. */
    public void pushUnknown(long timeMs, long kind, byte[] body) throws AwpException {
        long h = enter();
        try {
            nativePushUnknown(h, timeMs, kind, body);
        } finally {
            leave();
        }
    }

    /**
     * Seals what is queued and waits until every record was answered:
     * true then, false if {@code timeoutMs} ran out (nothing is lost). Blocks.
     */
    public boolean flush(long timeoutMs) throws AwpException {
        long h = enter();
        try {
            return nativeFlush(h, timeoutMs);
        } finally {
            leave();
        }
    }

    /** A new token (64 hex digits) and its expiry (unix seconds, 0 never), said at the next HELLO. */
    public void setToken(String tokenHex, long expiry) throws AwpException {
        long h = enter();
        try {
            nativeSetToken(h, tokenHex, expiry);
        } finally {
            leave();
        }
    }

    /** The counters, as a JSON object (docs/client.md). */
    public String statsJson() throws AwpException {
        long h = enter();
        try {
            return nativeStatsJson(h);
        } finally {
            leave();
        }
    }

    /**
     * Says BYE, syncs the queue and stops the engine; unacked records stay
     * queued. A flush under way on another thread returns at once (STOPPED).
     */
    @Override
    public void close() {
        // First tell the engine, under the read side: a flush under way on
        // another thread returns (STOPPED) and lets the write side come.
        lock.readLock().lock();
        try {
            if (handle != 0) {
                nativeBeginClose(handle);
            }
        } finally {
            lock.readLock().unlock();
        }
        lock.writeLock().lock();
        try {
            long h = handle;
            handle = 0;
            if (h != 0) {
                nativeClose(h);
            }
        } finally {
            lock.writeLock().unlock();
        }
    }

    private long enter() throws AwpException {
        lock.readLock().lock();
        if (handle == 0) {
            lock.readLock().unlock();
            throw new AwpException(AwpException.STOPPED, "the client is closed");
        }
        return handle;
    }

    private void leave() {
        lock.readLock().unlock();
    }

    private static native long nativeOpen(String configJson) throws AwpException;

    private static native void nativePushJson(long handle, String recordJson) throws AwpException;

    private static native void nativePushLocation(long handle, long timeMs, int latE7, int lonE7, long accuracyM)
            throws AwpException;

    private static native void nativePushAppUsage(long handle, long timeMs, String app, String title,
            long foregroundMs) throws AwpException;

    private static native void nativePushNetUsage(long handle, long timeMs, String app, int network, long bytesTx,
            long bytesRx) throws AwpException;

    private static native void nativePushMessage(long handle, long timeMs, int direction, int channel, String peer,
            long size) throws AwpException;

    private static native void nativePushEvent(long handle, long timeMs, String name, String[] keys, Object[] values)
            throws AwpException;

    private static native void nativePushUnknown(long handle, long timeMs, long kind, byte[] body)
            throws AwpException;

    private static native boolean nativeFlush(long handle, long timeoutMs) throws AwpException;

    private static native void nativeSetToken(long handle, String tokenHex, long expiry) throws AwpException;

    private static native String nativeStatsJson(long handle) throws AwpException;

    private static native void nativeBeginClose(long handle);

    private static native void nativeClose(long handle);
}
