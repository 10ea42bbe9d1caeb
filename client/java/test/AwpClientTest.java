import com.awp.client.AwpClient;
import com.awp.client.AwpException;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The Java binding on a real JVM, for client/tests/java.rs: opens a client
 * from the configuration in args[0], pushes one record of each kind and
 * 4 x 250 locations from four threads, checks the exceptions, flushes,
 * closes. Exit 0 when all held.
 */
public final class AwpClientTest {
    private static void check(boolean ok, String what) {
        if (!ok) {
            System.err.println("FAILED: " + what);
            System.exit(1);
        }
    }

    private interface Call {
        void run() throws AwpException;
    }

    private static void refused(Call call, int code, String named, String what) {
        try {
            call.run();
        } catch (AwpException e) {
            check(e.code() == code, what + ": code " + e.code() + " (" + e.getMessage() + ")");
            check(e.getMessage().contains(named), what + ": " + e.getMessage() + " should name " + named);
            return;
        }
        check(false, what + ": not refused");
    }

    public static void main(String[] args) throws Exception {
        refused(() -> AwpClient.open("{\"gateways\": [\"127.0.0.1:1\"]}"), AwpException.INVALID, "tenant",
                "open without tenant");
        refused(() -> AwpClient.open("{\"queue_dri\": 1}"), AwpException.INVALID, "queue_dri", "a misspelt key");
        refused(() -> AwpClient.open(null), AwpException.INVALID, "config", "open(null)");

        AwpClient client = AwpClient.open(args[0]);
        client.pushLocation(1700000000001L, 515000000, -1000000, 1);
        client.pushAppUsage(1700000000002L, "com.example.mail", "Inbox", 2);
        client.pushNetUsage(1700000000003L, "com.example.mail", AwpClient.NETWORK_WIFI, 3, 30);
        client.pushMessage(1700000000004L, AwpClient.DIRECTION_OUT, AwpClient.CHANNEL_CHAT, "+15550100", 4);
        Map<String, Object> attrs = new LinkedHashMap<>();
        attrs.put("ok", true);
        attrs.put("n", -5L);
        attrs.put("i", 7);
        attrs.put("x", 2.5);
        attrs.put("s", "hi");
        attrs.put("b", new byte[] {(byte) 0xde, (byte) 0xad});
        attrs.put("z", null);
        client.pushEvent(1700000000005L, "java.event", attrs);
        client.pushUnknown(1700000000006L, 42, new byte[] {1, 2, 3});
        client.pushJson("{\"kind\": 1, \"time_ms\": 1700000000007,"
                + " \"location\": {\"lat_e7\": 1, \"lon_e7\": 2, \"accuracy_m\": 7}}");

        refused(() -> client.pushJson("{\"kind\": 1}"), AwpException.INVALID, "time_ms", "json without time_ms");
        refused(() -> client.pushAppUsage(1, null, "", 1), AwpException.INVALID, "app", "a null app");
        refused(() -> client.pushMessage(1700000000009L, 7, 0, "", 1), AwpException.INVALID, "direction",
                "direction 7");
        Map<String, Object> bad = new LinkedHashMap<>();
        bad.put("o", new Object());
        refused(() -> client.pushEvent(1700000000010L, "e", bad), AwpException.INVALID, "o", "an Object attribute");
        refused(() -> client.setToken("abc", 0), AwpException.INVALID, "token", "a short token");
        refused(() -> client.pushAppUsage(1700000000011L, "a", "", -1), AwpException.INVALID, "foreground_ms",
                "a negative foreground time");
        Map<String, Object> many = new LinkedHashMap<>();
        for (int i = 0; i < 1000; i++) {
            many.put("k" + i, i);
        }
        refused(() -> client.pushEvent(1700000000012L, "e", many), AwpException.INVALID, "attrs",
                "a thousand attributes");

        // close() while another thread flushes (nothing can be delivered to
        // this gateway): the flush returns STOPPED, close does not wait it out.
        AwpClient stuck = AwpClient.open(args[1]);
        stuck.pushLocation(1700000000013L, 1, 2, 3);
        Thread flushing = new Thread(() -> {
            try {
                stuck.flush(600000);
                check(false, "a flush to nowhere returned true");
            } catch (AwpException e) {
                check(e.code() == AwpException.STOPPED, "the flush ends STOPPED: " + e.getMessage());
            }
        });
        flushing.start();
        Thread.sleep(200);
        long closing = System.nanoTime();
        stuck.close();
        flushing.join();
        check(System.nanoTime() - closing < 20_000_000_000L, "close did not wait out the flush");

        Thread[] threads = new Thread[4];
        for (int t = 0; t < 4; t++) {
            final long first = 1000 + t * 250L;
            threads[t] = new Thread(() -> {
                try {
                    for (long n = first; n < first + 250; n++) {
                        client.pushLocation(1700000000000L + n, 1, 2, n);
                    }
                } catch (AwpException e) {
                    check(false, "push from a thread: " + e.getMessage());
                }
            });
            threads[t].start();
        }
        for (Thread t : threads) {
            t.join();
        }
        check(client.flush(30000), "flush");
        String stats = client.statsJson();
        System.out.println(stats);
        check(stats.contains("\"records_acked\":1007"), "1007 records acked");
        client.close();
        client.close();
        refused(() -> client.pushLocation(1, 1, 2, 3), AwpException.STOPPED, "closed", "a push after close");
        System.out.println("ok");
    }
}
