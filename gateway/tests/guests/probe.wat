;; A small proxy-wasm guest for testing the host. Its configuration is a
;; string, and each upper-case letter in it turns on one behaviour:
;;
;;   R  reject the configuration (logs "probe: rejected configuration")
;;   T  trap in on_request_headers
;;   D  answer 429 with a local response from on_request_headers
;;   P  return Pause from on_request_headers and never resume
;;   U  call proxy_continue_stream, then return Pause from on_request_headers
;;   B  buffer the request body: Pause until end_of_stream
;;   C  count requests in the shared key "probe/count" (4-byte little-endian)
;;
;; Always: on_request_headers adds "x-probe: <config>" and copies the
;; properties source.address and kong.route_id into "x-probe-source" and
;; "x-probe-route"; on_request_body prepends "[" to each buffer it lets
;; through; on_response_headers adds "x-probe-response: <config>";
;; on_response_body prepends "|" to each non-empty chunk. Each callback logs
;; its name.
(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_buffer_bytes" (func $set_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_send_local_response" (func $send_local (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_property" (func $get_property (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_shared_data" (func $get_shared (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_shared_data" (func $set_shared (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $continue (param i32) (result i32)))

  ;; Page 0 holds the strings, the return slots (512, 516, 520), a scratch
  ;; word (600) and the configuration (2048..4047); pages 1 and 2 are the heap.
  (memory (export "memory") 3)
  (global $heap (mut i32) (i32.const 65536))
  (global $config_len (mut i32) (i32.const 0))

  (data (i32.const 1024) "x-probe")
  (data (i32.const 1040) "x-probe-response")
  (data (i32.const 1060) "source\00address")
  (data (i32.const 1080) "x-probe-source")
  (data (i32.const 1100) "kong\00route_id")
  (data (i32.const 1120) "x-probe-route")
  (data (i32.const 1140) "denied")
  (data (i32.const 1150) "rate limited")
  ;; One header pair, x-probe-deny: 1, in the proxy-wasm map encoding.
  (data (i32.const 1200) "\01\00\00\00\0c\00\00\00\01\00\00\00x-probe-deny\001\00")
  (data (i32.const 1240) "probe: rejected configuration")
  (data (i32.const 1280) "probe: on_response_body more")
  (data (i32.const 1320) "probe: on_response_body eos")
  (data (i32.const 1360) "|")
  (data (i32.const 1364) "[")
  (data (i32.const 1368) "probe/count")
  (data (i32.const 1400) "probe: cas mismatch")
  (data (i32.const 1440) "probe: on_request_headers")
  (data (i32.const 1480) "probe: on_response_headers")
  (data (i32.const 1520) "probe: on_log")
  (data (i32.const 1540) "probe: on_request_body more")
  (data (i32.const 1580) "probe: on_request_body eos")
  (data (i32.const 1620) "probe: store failure")

  (func (export "proxy_abi_version_0_2_1"))

  ;; A bump allocator that starts over when the heap is used up.
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $ptr i32)
    (if (i32.gt_u (i32.add (global.get $heap) (local.get $size)) (i32.const 196608))
      (then (global.set $heap (i32.const 65536))))
    (local.set $ptr (global.get $heap))
    (global.set $heap
      (i32.and (i32.add (i32.add (global.get $heap) (local.get $size)) (i32.const 7))
               (i32.const -8)))
    (local.get $ptr))

  ;; Whether the configuration contains the byte $flag.
  (func $has (param $flag i32) (result i32)
    (local $i i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (global.get $config_len)))
        (if (i32.eq (i32.load8_u (i32.add (i32.const 2048) (local.get $i))) (local.get $flag))
          (then (return (i32.const 1))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 0))

  (func $count
    (local $status i32)
    (local.set $status
      (call $get_shared (i32.const 1368) (i32.const 11) (i32.const 512) (i32.const 516) (i32.const 520)))
    (if (i32.eqz (local.get $status))
      (then
        (i32.store (i32.const 600) (i32.add (i32.load (i32.load (i32.const 512))) (i32.const 1)))
        (local.set $status
          (call $set_shared (i32.const 1368) (i32.const 11) (i32.const 600) (i32.const 4)
                (i32.load (i32.const 520)))))
      (else
        (if (i32.eq (local.get $status) (i32.const 1))
          (then
            (i32.store (i32.const 600) (i32.const 1))
            (local.set $status
              (call $set_shared (i32.const 1368) (i32.const 11) (i32.const 600) (i32.const 4)
                    (i32.const 0)))))))
    (if (i32.eq (local.get $status) (i32.const 8))
      (then (drop (call $log (i32.const 3) (i32.const 1400) (i32.const 19)))))
    (if (i32.eq (local.get $status) (i32.const 10))
      (then (drop (call $log (i32.const 3) (i32.const 1620) (i32.const 20))))))

  (func (export "proxy_on_context_create") (param i32 i32))

  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    (i32.const 1))

  (func (export "proxy_on_configure") (param $context i32) (param $size i32) (result i32)
    (global.set $config_len (i32.const 0))
    (if (i32.gt_u (local.get $size) (i32.const 0))
      (then
        (drop (call $get_buffer (i32.const 7) (i32.const 0) (local.get $size)
                    (i32.const 512) (i32.const 516)))
        (global.set $config_len (i32.load (i32.const 516)))
        (if (i32.gt_u (global.get $config_len) (i32.const 2000))
          (then (global.set $config_len (i32.const 2000))))
        (memory.copy (i32.const 2048) (i32.load (i32.const 512)) (global.get $config_len))))
    (if (call $has (i32.const 82))
      (then
        (drop (call $log (i32.const 4) (i32.const 1240) (i32.const 29)))
        (return (i32.const 0))))
    (i32.const 1))

  (func (export "proxy_on_request_headers") (param $context i32) (param $count i32) (param $eos i32) (result i32)
    (drop (call $log (i32.const 2) (i32.const 1440) (i32.const 25)))
    (if (call $has (i32.const 84)) (then unreachable))
    (drop (call $add_header (i32.const 0) (i32.const 1024) (i32.const 7)
                (i32.const 2048) (global.get $config_len)))
    (if (i32.eqz (call $get_property (i32.const 1060) (i32.const 14) (i32.const 512) (i32.const 516)))
      (then
        (drop (call $add_header (i32.const 0) (i32.const 1080) (i32.const 14)
                    (i32.load (i32.const 512)) (i32.load (i32.const 516))))))
    (if (i32.eqz (call $get_property (i32.const 1100) (i32.const 13) (i32.const 512) (i32.const 516)))
      (then
        (drop (call $add_header (i32.const 0) (i32.const 1120) (i32.const 13)
                    (i32.load (i32.const 512)) (i32.load (i32.const 516))))))
    (if (call $has (i32.const 67)) (then (call $count)))
    (if (call $has (i32.const 68))
      (then
        (drop (call $send_local (i32.const 429) (i32.const 1150) (i32.const 12)
                    (i32.const 1140) (i32.const 6) (i32.const 1200) (i32.const 27) (i32.const -1)))
        (return (i32.const 1))))
    (if (call $has (i32.const 85))
      (then
        (drop (call $continue (i32.const 0)))
        (return (i32.const 1))))
    (if (call $has (i32.const 80)) (then (return (i32.const 1))))
    (i32.const 0))

  (func (export "proxy_on_request_body") (param $context i32) (param $size i32) (param $eos i32) (result i32)
    (if (local.get $eos)
      (then (drop (call $log (i32.const 2) (i32.const 1580) (i32.const 26))))
      (else (drop (call $log (i32.const 2) (i32.const 1540) (i32.const 27)))))
    (if (i32.and (call $has (i32.const 66)) (i32.eqz (local.get $eos)))
      (then (return (i32.const 1))))
    (drop (call $set_buffer (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 1364) (i32.const 1)))
    (i32.const 0))

  (func (export "proxy_on_response_headers") (param $context i32) (param $count i32) (param $eos i32) (result i32)
    (drop (call $log (i32.const 2) (i32.const 1480) (i32.const 26)))
    (drop (call $add_header (i32.const 2) (i32.const 1040) (i32.const 16)
                (i32.const 2048) (global.get $config_len)))
    (i32.const 0))

  (func (export "proxy_on_response_body") (param $context i32) (param $size i32) (param $eos i32) (result i32)
    (if (local.get $eos)
      (then (drop (call $log (i32.const 2) (i32.const 1320) (i32.const 27))))
      (else (drop (call $log (i32.const 2) (i32.const 1280) (i32.const 28)))))
    (if (i32.gt_u (local.get $size) (i32.const 0))
      (then
        (drop (call $set_buffer (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 1360) (i32.const 1)))))
    (i32.const 0))

  (func (export "proxy_on_done") (param i32) (result i32)
    (i32.const 1))

  (func (export "proxy_on_log") (param i32)
    (drop (call $log (i32.const 2) (i32.const 1520) (i32.const 13))))

  (func (export "proxy_on_delete") (param i32)))
