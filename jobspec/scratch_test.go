package jobspec
import ("testing";"os";"fmt")
func TestScratch(t *testing.T){
	data, _ := os.ReadFile("../examples/train-tiny.yaml")
	spec, err := Load(data)
	fmt.Println(spec, err)
	out, err := Marshal(spec)
	fmt.Println(string(out), err)
	for _, s := range []string{
		"name: x\nresources:\n  workerz: 3\n  workers: four\n  gpu_models: H100\n  max_price_per_gpu_hour: 1.1234567\nbudget: 25\nworkers: 3\nsync: {algorithm: DiLoCo, outer_lr: .nan, inner_steps: -3}\nstop: {rounds: \"5\", target_loss: 1e999}\nname: y\nmodel: {command: python3 train.py}\nx: &a 1\ny: *a\n",
		"a: 1\n---\nb: 2\n", "", "[1,2]", "name: [\n", "model: {}\ndata:\n", "name: Tiny_LM\nmodel: {builtin: transformer-tiny, env: {A: b}}\nresources: {workers: 0, bid_selector: 'cheap:1,reliable:-1'}\nsync: {algorithm: ddp, inner_steps: 50}\nlabels: {Team: x}\ncheckpoint: {store: gs://x}\n",
	} {
		_, err := Parse([]byte(s))
		fmt.Printf("---\n%v\n", err)
		_, err = Load([]byte(s))
		fmt.Printf("LOAD:\n%v\n", err)
	}
}
