curl https://api.aqta.ai/v1/chat/completions \
  -H "Authorisation: Bearer sk-aqta-YOUR_KEY" \
  -H "Content-Type: application/json" \
  -d '{
    "model": "gpt-4",
    "messages": [{"role": "user", "content": "Hello!"}]
  }'
