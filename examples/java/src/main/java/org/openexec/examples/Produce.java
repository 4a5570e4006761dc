package org.openexec.examples;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.message.BinaryMessageEncoder;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Publishes two OpenExec execution requests to the requests topic: one as
 * JSON (nonce PREFIX-json) and one in Avro single-object encoding (nonce
 * PREFIX-avro), both keyed by their nonce.
 *
 * <pre>
 * java -jar target/openexec-examples.jar --brokers 127.0.0.1:9092 \
 *     [--requests-topic T] [--action add] [--payload '{"a": 2, "b": 3}'] \
 *     [--nonce PREFIX] [--timeout SECONDS]
 * </pre>
 *
 * <p>The Avro record follows schemas/execution_request.avsc (packed into the
 * jar); Avro's BinaryMessageEncoder writes the single-object header (C3 01 and
 * the schema's CRC-64-AVRO fingerprint) that the workers check. Each request
 * is waited for until the broker acknowledged it, and printed as one JSON
 * line. Exit status: 0 when both were delivered, 1 when not within the
 * timeout, 2 for a usage error.
 *
 * <p>It needs Apache Kafka: kafka-clients does not get past its version
 * handshake with the embedded broker of {@code openexec run}.
 */
public final class Produce {
    private static final ObjectMapper JSON = new ObjectMapper();

    private Produce() {}

    public static void main(String[] argv) {
        Map<String, String> args;
        try {
            args = parseArgs(argv);
        } catch (IllegalArgumentException e) {
            System.err.println("openexec-examples: " + e.getMessage());
            System.err.println("usage: java -jar openexec-examples.jar --brokers HOST:PORT"
                    + " [--requests-topic T] [--action A] [--payload JSON] [--nonce PREFIX]"
                    + " [--timeout SECONDS]");
            System.exit(2);
            return;
        }
        try {
            run(args);
        } catch (Exception e) {
            System.err.println("openexec-examples: " + e);
            System.exit(1);
        }
    }

    private static Map<String, String> parseArgs(String[] argv) {
        Map<String, String> args = new LinkedHashMap<>();
        String topic = System.getenv("OPENEXEC_REQUESTS_TOPIC");
        args.put("--requests-topic", topic != null ? topic : "openexec.requests");
        args.put("--action", "add");
        args.put("--payload", "{\"a\": 2, \"b\": 3}");
        args.put("--nonce", "java-" + UUID.randomUUID());
        args.put("--timeout", "30");
        for (int i = 0; i < argv.length; i += 2) {
            if (!argv[i].equals("--brokers") && !args.containsKey(argv[i])) {
                throw new IllegalArgumentException("unknown option " + argv[i]);
            }
            if (i + 1 >= argv.length) {
                throw new IllegalArgumentException(argv[i] + " needs a value");
            }
            args.put(argv[i], argv[i + 1]);
        }
        if (!args.containsKey("--brokers")) {
            throw new IllegalArgumentException("--brokers is required");
        }
        return args;
    }

    private static void run(Map<String, String> args) throws Exception {
        String topic = args.get("--requests-topic");
        String action = args.get("--action");
        String prefix = args.get("--nonce");
        long timeoutMs = (long) (Double.parseDouble(args.get("--timeout")) * 1000);
        JsonNode payload = JSON.readTree(args.get("--payload"));
        if (payload == null || !payload.isObject()) {
            throw new IllegalArgumentException("--payload must be a JSON object");
        }

        // JSON: the request object as text; its first byte is '{'.
        String jsonNonce = prefix + "-json";
        ObjectNode request = JSON.createObjectNode();
        request.put("action", action);
        request.set("payload", payload);
        request.put("nonce", jsonNonce);
        byte[] jsonValue = JSON.writeValueAsBytes(request);

        // Avro single-object encoding of an ExecutionRequest record; the
        // payload travels as JSON text, and there is no approval artifact.
        String avroNonce = prefix + "-avro";
        Schema schema = loadSchema("/execution_request.avsc");
        GenericRecord record = new GenericData.Record(schema);
        record.put("action", action);
        record.put("payload", JSON.writeValueAsString(payload));
        record.put("nonce", avroNonce);
        record.put("approval_artifact", null);
        BinaryMessageEncoder<GenericRecord> encoder =
                new BinaryMessageEncoder<>(GenericData.get(), schema);
        ByteBuffer encoded = encoder.encode(record);
        byte[] avroValue = new byte[encoded.remaining()];
        encoded.get(avroValue);

        Properties conf = new Properties();
        conf.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, args.get("--brokers"));
        conf.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        conf.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        conf.put(ProducerConfig.ACKS_CONFIG, "all");
        conf.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        // Every wait bounded by the timeout: metadata, each request, delivery.
        conf.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, Long.toString(timeoutMs));
        conf.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, Long.toString(Math.min(timeoutMs, 30000)));
        conf.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, Long.toString(timeoutMs));
        conf.put(ProducerConfig.LINGER_MS_CONFIG, "0");

        KafkaProducer<String, byte[]> producer = new KafkaProducer<>(conf);
        try {
            Future<RecordMetadata> json = producer.send(new ProducerRecord<>(topic, jsonNonce, jsonValue));
            Future<RecordMetadata> avro = producer.send(new ProducerRecord<>(topic, avroNonce, avroValue));
            report("json", jsonNonce, json, timeoutMs);
            report("avro-single-object", avroNonce, avro, timeoutMs);
        } finally {
            producer.close(Duration.ofMillis(timeoutMs));
        }
    }

    private static Schema loadSchema(String resource) throws IOException {
        try (InputStream in = Produce.class.getResourceAsStream(resource)) {
            if (in == null) {
                throw new IOException(resource + " is not in the jar");
            }
            return new Schema.Parser().parse(new String(in.readAllBytes(), StandardCharsets.UTF_8));
        }
    }

    private static void report(String format, String nonce, Future<RecordMetadata> sent, long timeoutMs)
            throws Exception {
        RecordMetadata md;
        try {
            md = sent.get(timeoutMs, TimeUnit.MILLISECONDS);
        } catch (ExecutionException e) {
            throw new IOException("request " + nonce + " not delivered: " + e.getCause(), e);
        } catch (TimeoutException e) {
            throw new IOException("request " + nonce + " not delivered within " + timeoutMs + " ms", e);
        }
        ObjectNode line = JSON.createObjectNode();
        line.put("sent", format);
        line.put("nonce", nonce);
        line.put("topic", md.topic());
        line.put("partition", md.partition());
        line.put("offset", md.offset());
        System.out.println(JSON.writeValueAsString(line));
    }
}
