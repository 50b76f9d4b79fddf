#include "threadpool.h"

#include <cstdlib>

namespace fl {

int default_thread_count() {
  if (const char* env = std::getenv("FUSEDLOSS_THREADS")) {
    const long n = std::strtol(env, nullptr, 10);
    if (n >= 1 && n <= 1024) return int(n);
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : int(hw);
}

ThreadPool::ThreadPool(int threads) : threads_(threads < 1 ? 1 : threads) {
  for (int i = 1; i < threads_; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::work_on(Job& job) {
  for (;;) {
    const int64_t t = job.next.fetch_add(1, std::memory_order_relaxed);
    if (t >= job.tasks) return;
    job.fn(t);
    job.done.fetch_add(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::worker_loop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    wake_.wait(lock, [this] { return stop_ || !queue_.empty(); });
    if (stop_) return;
    std::shared_ptr<Job> job = queue_.front();
    // A job whose tasks are all claimed leaves the queue; its caller still waits for `done`.
    if (job->next.load(std::memory_order_relaxed) >= job->tasks) {
      queue_.pop_front();
      continue;
    }
    job->helpers.fetch_add(1);
    lock.unlock();
    work_on(*job);
    lock.lock();
    job->helpers.fetch_sub(1);
    finished_.notify_all();
  }
}

void ThreadPool::parallel_for(int64_t tasks, const std::function<void(int64_t)>& fn) {
  if (tasks <= 0) return;
  if (tasks == 1 || workers_.empty()) {
    for (int64_t t = 0; t < tasks; ++t) fn(t);
    return;
  }
  auto job = std::make_shared<Job>();
  job->fn = fn;
  job->tasks = tasks;
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(job);
  }
  wake_.notify_all();
  work_on(*job);
  std::unique_lock<std::mutex> lock(mu_);
  // Wait until every task has finished and no pool thread still holds the job (its fn
  // reference points into this frame's argument).
  finished_.wait(lock, [&] {
    return job->done.load(std::memory_order_acquire) == tasks && job->helpers.load() == 0;
  });
  for (auto it = queue_.begin(); it != queue_.end(); ++it) {
    if (*it == job) { queue_.erase(it); break; }
  }
}

}  // namespace fl
