// The LLM spans the compatibility and sidecar integration tests export with the official
// OpenTelemetry JS SDK: one span per convention (OpenTelemetry GenAI with current and old names,
// OpenInference, OpenLLMetry) plus a span that is not an LLM call, each with the facts
// LLM-Sentinel must extract from it (null: no event).
import { SpanStatusCode } from '@opentelemetry/api';

// The resource an application would set up, and the facts taken from it.
export const resourceAttributes = {
  'service.name': 'chatbot-api',
  'service.version': '2.3.1',
  'cloud.region': 'eu-central-1',
  'k8s.pod.name': 'chatbot-api-6c9f7d8b5-x2x7q',
  'deployment.environment.name': 'production',
};

// Returns [{name, start, end, attributes, facts, status}] with times from at(sec, ns).
export function llmSpanSpecs(at) {
  const specs = [];
  const emit = (name, start, end, attributes, facts, status) =>
    specs.push({ name, start, end, attributes, facts, status });

  const resourceFacts = {
    service: 'chatbot-api',
    service_version: '2.3.1',
    region: 'eu-central-1',
    pod: 'chatbot-api-6c9f7d8b5-x2x7q',
  };

  // 1. OpenTelemetry GenAI, current names.
  emit(
    'chat gpt-4o',
    at(0, 0),
    at(2, 500000000),
    {
      'gen_ai.operation.name': 'chat',
      'gen_ai.provider.name': 'az.ai.openai',
      'gen_ai.request.model': 'gpt-4o',
      'gen_ai.response.model': 'gpt-4o-2024-08-06',
      'gen_ai.usage.input_tokens': 1200,
      'gen_ai.usage.output_tokens': 350,
      'gen_ai.usage.cache_read.input_tokens': 200,
      'gen_ai.usage.reasoning.output_tokens': 0,
      'gen_ai.response.finish_reasons': ['stop', 'length'],
      'gen_ai.response.time_to_first_chunk': 0.42,
      'gen_ai.request.temperature': 0.2,
      'gen_ai.request.stop_sequences': ['\n\n'],
      'gen_ai.input.messages': '[{"role":"user","parts":[{"type":"text","content":"secret prompt"}]}]',
      'user.id': 'user-42',
      'server.address': 'my-resource.openai.azure.com',
    },
    {
      ...resourceFacts,
      model: 'gpt-4o-2024-08-06',
      provider: 'azure.ai.openai',
      operation: 'chat',
      finish_reason: 'stop',
      user: 'user-42',
      input_tokens: 1200,
      output_tokens: 350,
      total_tokens: 1550,
      cache_read_tokens: 200,
      reasoning_tokens: 0,
      latency_ms: 2500,
      ttft_ms: 420,
      is_error: false,
      cost_source: 'price_table',
      conventions: ['genai'],
    },
  );

  // 2. OpenTelemetry GenAI, old names, failed call.
  emit(
    'chat gemini-1.5-pro',
    at(10, 250000000),
    at(11, 0),
    {
      'gen_ai.operation.name': 'chat',
      'gen_ai.system': 'vertex_ai',
      'gen_ai.request.model': 'gemini-1.5-pro',
      'gen_ai.usage.prompt_tokens': 800,
      'gen_ai.usage.completion_tokens': 120,
      'error.type': 'rate_limit_exceeded',
    },
    {
      ...resourceFacts,
      model: 'gemini-1.5-pro',
      provider: 'gcp.vertex_ai',
      operation: 'chat',
      error_type: 'rate_limit_exceeded',
      input_tokens: 800,
      output_tokens: 120,
      total_tokens: 920,
      latency_ms: 750,
      ttft_ms: null,
      is_error: true,
      conventions: ['genai'],
    },
    { code: SpanStatusCode.ERROR, message: '429 Too Many Requests' },
  );

  // 3. OpenInference (Arize/Phoenix instrumentations), with the span's own cost.
  emit(
    'ChatCompletion',
    at(20, 0),
    at(23, 125000000),
    {
      'openinference.span.kind': 'LLM',
      'llm.model_name': 'claude-3-5-sonnet-20241022',
      'llm.provider': 'anthropic',
      'llm.system': 'anthropic',
      'llm.token_count.prompt': 500,
      'llm.token_count.completion': 60,
      'llm.token_count.total': 560,
      'llm.cost.total': 0.0123,
      'input.value': 'secret prompt',
      'output.value': 'secret answer',
    },
    {
      ...resourceFacts,
      model: 'claude-3-5-sonnet-20241022',
      provider: 'anthropic',
      input_tokens: 500,
      output_tokens: 60,
      total_tokens: 560,
      latency_ms: 3125,
      cost_usd: 0.0123,
      cost_source: 'span',
      is_error: false,
      conventions: ['openinference'],
    },
  );

  // 4. OpenLLMetry (Traceloop instrumentations).
  emit(
    'openai.chat',
    at(30, 0),
    at(30, 900000000),
    {
      'llm.request.type': 'chat',
      'gen_ai.system': 'openai',
      'gen_ai.request.model': 'gpt-4o-mini',
      'gen_ai.response.model': 'gpt-4o-mini-2024-07-18',
      'gen_ai.usage.prompt_tokens': 30,
      'gen_ai.usage.completion_tokens': 10,
      'llm.usage.total_tokens': 40,
      'gen_ai.usage.cache_read_input_tokens': 5,
      'gen_ai.prompt.0.content': 'secret prompt',
    },
    {
      ...resourceFacts,
      model: 'gpt-4o-mini-2024-07-18',
      provider: 'openai',
      operation: 'chat', // from llm.request.type
      input_tokens: 30,
      output_tokens: 10,
      total_tokens: 40,
      cache_read_tokens: 5,
      latency_ms: 900,
      is_error: false,
      conventions: ['openllmetry'],
    },
  );

  // 5. Not an LLM call: must produce no event.
  emit(
    'GET /healthz',
    at(40, 0),
    at(40, 1000000),
    { 'http.request.method': 'GET', 'url.path': '/healthz', 'http.response.status_code': 200, 'some.flags': [true, false] },
    null,
  );
  return specs;
}
